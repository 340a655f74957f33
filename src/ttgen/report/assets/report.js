/* ttgen report: renders the JSON in #report-data into #app. No libraries, no network: every
 * node is built with createElement/textContent (the data is untrusted: task text, terminal
 * output), charts are inline SVG. */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var OUTCOME_LABEL = {
    passed: "passed", failed: "failed", agent_timeout: "agent timeout",
    verifier_timeout: "verifier timeout", reward_missing: "reward missing",
    unverified: "unverified (no tests)", tampered: "tampered (reward not trusted)",
    build_error: "build error",
    environment_error: "environment error", agent_error: "agent error", llm_error: "LLM error",
    cancelled: "cancelled", unfinished: "unfinished (no result.json)"
  };

  // -- DOM helpers -----------------------------------------------------------------------------

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
  }

  function append(node, children) {
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      if (Array.isArray(c)) { append(node, c); return; }
      if (typeof c === "string" || typeof c === "number") c = document.createTextNode(String(c));
      node.appendChild(c);
    });
    return node;
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    return append(node, Array.prototype.slice.call(arguments, 2));
  }

  function sv(tag, attrs) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    return append(node, Array.prototype.slice.call(arguments, 2));
  }

  function put(parent, child) { if (child) parent.appendChild(child); }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // -- formatting ------------------------------------------------------------------------------

  function num(n) {
    if (n === null || n === undefined) return "—";
    if (typeof n !== "number") return String(n);
    return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }
  function pct(r) { return r === null || r === undefined ? "—" : (r * 100).toFixed(1) + "%"; }
  function usd(x) { return x === null || x === undefined ? "—" : "$" + (x < 1 ? x.toFixed(4) : x.toFixed(2)); }
  function entries(obj) { return obj ? Object.keys(obj).map(function (k) { return [k, obj[k]]; }) : []; }
  function sum(list) { return list.reduce(function (a, b) { return a + (b || 0); }, 0); }

  function outcomeBadge(outcome, infra) {
    var cls = "badge o-" + outcome + (infra ? " infra" : "");
    return el("span", { "class": cls, "data-outcome": outcome, text: OUTCOME_LABEL[outcome] || outcome });
  }
  function standinBadge(agent) {
    return el("span", { "class": "badge standin", title: "a stand-in agent, not a teacher model",
      text: "STAND-IN" + (agent ? ": " + agent : "") });
  }

  function section(id, title) {
    var s = el("section", { id: id }, el("h2", { text: title }));
    document.getElementById("app").appendChild(s);
    return s;
  }

  /* A table in a box that scrolls sideways when the table is wider than its card (the page
   * itself never does). */
  function table(cls, headers, rows, id) {
    var thead = el("thead", null, el("tr", null, headers.map(function (h) {
      return el("th", { "class": h.num ? "num" : null, text: h.label || h });
    })));
    return el("div", { "class": "tscroll" },
      el("table", { "class": cls, id: id || null }, thead, el("tbody", null, rows)));
  }

  /* A small key / value table (nested objects as nested tables), e.g. a stage's counts. */
  function kvTable(obj) {
    return el("table", { "class": "kv" }, el("tbody", null, entries(obj).map(function (e) {
      var v = e[1];
      var cell = v !== null && typeof v === "object" && !Array.isArray(v) ?
        el("td", null, entries(v).length ? kvTable(v) : "—") :
        el("td", { "class": typeof v === "number" ? "num" : null,
          text: Array.isArray(v) ? v.join(", ") : typeof v === "boolean" ? (v ? "yes" : "no") : num(v) });
      return el("tr", { "data-key": e[0] }, el("th", { text: e[0] }), cell);
    })));
  }

  /* 2026-11-01T12:00:00.123456+00:00 -> 2026-11-01 12:00:00 (the full value in the tooltip). */
  function when(ts) {
    if (!ts) return el("span", { text: "—" });
    var m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(ts);
    return el("span", { title: ts, text: m ? m[1] + " " + m[2] : ts });
  }

  function card(value, label, attrs) {
    return el("div", Object.assign({ "class": "card" }, attrs || {}),
      el("div", { "class": "v", text: value }), el("div", { "class": "k", text: label }));
  }

  // -- charts ----------------------------------------------------------------------------------

  /* A vertical bar chart: one rect.bar per label; `overlay` (same length) is drawn as the
   * stand-in part of each bar (rect.bar-standin). */
  function barChart(id, labels, values, overlay, caption) {
    var W = 640, H = 220, top = 18, bottom = 36, left = 8, right = 8;
    var n = labels.length;
    var max = Math.max.apply(null, values.concat([1]));
    var slot = (W - left - right) / Math.max(n, 1);
    var bw = Math.max(4, slot * 0.72);
    var svg = sv("svg", { id: id, "class": "chart bars", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": caption || id });
    put(svg, sv("line", { "class": "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
    for (var i = 0; i < n; i++) {
      var v = values[i] || 0;
      var h = (H - top - bottom) * v / max;
      var x = left + slot * i + (slot - bw) / 2;
      var y = H - bottom - h;
      put(svg, sv("rect", { "class": "bar", x: x, y: y, width: bw, height: Math.max(h, 0),
        "data-label": labels[i], "data-count": v }, sv("title", { text: labels[i] + ": " + num(v) })));
      var o = overlay ? overlay[i] || 0 : 0;
      if (o > 0) {
        var oh = (H - top - bottom) * o / max;
        put(svg, sv("rect", { "class": "bar-standin", x: x, y: H - bottom - oh, width: bw,
          height: oh, "data-count": o }, sv("title", { text: labels[i] + ": " + num(o) + " from a stand-in agent" })));
      }
      put(svg, sv("text", { "class": "v", x: x + bw / 2, y: y - 4, "text-anchor": "middle", text: num(v) }));
      put(svg, sv("text", { x: x + bw / 2, y: H - bottom + 14, "text-anchor": "middle", text: labels[i] }));
    }
    return svg;
  }

  /* A horizontal bar chart of [label, count] pairs; standin maps label -> stand-in count (drawn
   * in the stand-in colour at the end of the bar). HTML, not SVG: labels and values are text in
   * their own grid columns, so they wrap or take the room they need and are never cut. */
  function hbarChart(id, pairs, standin) {
    var max = Math.max.apply(null, pairs.map(function (p) { return p[1]; }).concat([1]));
    var box = el("div", { id: id, "class": "chart hbars", role: "img" });
    pairs.forEach(function (p) {
      var s = standin ? standin[p[0]] || 0 : 0;
      var bar = el("span", { "class": "hbar", style: "width:" + (100 * p[1] / max).toFixed(2) + "%",
        title: p[0] + ": " + num(p[1]) + (s > 0 ? ", " + num(s) + " from a stand-in agent" : "") },
        s > 0 ? el("span", { "class": "hbar-standin", "data-count": s,
          style: "width:" + (100 * Math.min(s, p[1]) / Math.max(p[1], 1)).toFixed(2) + "%" }) : null);
      put(box, el("div", { "class": "hrow", "data-label": p[0], "data-count": p[1], "data-standin": s },
        el("span", { "class": "hlabel", text: p[0] }),
        el("span", { "class": "htrack" }, bar),
        el("span", { "class": "hvalue", text: num(p[1]) + (s > 0 ? " (" + num(s) + " stand-in)" : "") })));
    });
    if (!pairs.length) put(box, el("span", { "class": "empty", text: "none" }));
    return box;
  }

  /* Says what the colours mean wherever the stand-in colour is used. */
  function legend(withStandin, first, firstCls) {
    if (!withStandin) return null;
    return el("div", { "class": "legend" }, el("span", { "class": "sw " + (firstCls || "teacher") }), first || "teacher model",
      el("span", { "class": "sw standin" }), "stand-in agent (oracle/nop: not teacher data)");
  }

  // -- sections --------------------------------------------------------------------------------

  function renderHeader(d) {
    var app = document.getElementById("app");
    var input = d.input || {};
    var kindText = { run: "pipeline run", rollouts: "rollout job", curated: "curated data folder",
      validation: "validation job" }[input.kind] || input.kind;
    put(app, el("h1", { text: "ttgen report: " + (input.name || "") }));
    put(app, el("div", { "class": "meta" }, kindText + " ", el("code", { text: input.path || "" }),
      " · generated " + (d.generated_at || "") + " · ttgen " + (d.ttgen_version || "")));
    var si = d.stand_in || {};
    if (si.records || si.trials) {
      var parts = [];
      if (si.records) parts.push(num(si.records) + " kept record(s)");
      if (si.trials) parts.push(num(si.trials) + " rollout trial(s)");
      put(app, el("div", { "class": "standin-banner", id: "standin-banner" },
        "Stand-in data: " + parts.join(" and ") + " come from a stand-in agent (" +
        (si.agents || []).join(", ") + "), not a teacher model. They show the pipeline working; " +
        "they are not teacher data. They are marked STAND-IN below and drawn in purple in the figures."));
    }
    if (d.missing && d.missing.length) {
      put(app, el("div", { "class": "missing", id: "missing" },
        el("strong", { text: "Not in this report:" }),
        el("ul", null, d.missing.map(function (m) {
          return el("li", { "data-stage": m.stage }, el("strong", { text: m.stage }), ": " + m.what +
            " (stage " + m.status + ")");
        }))));
    }
  }

  var WHY_PREFIX = { source: "from source ", kept: "kept · ", drop: "dropped · ",
    not_rolled_out: "not rolled out · ", stand_in: "", note: "" };

  function whyItem(w) {
    var li = el("li", { "class": "why-" + w.kind, "data-kind": w.kind, "data-reason": w.what });
    if (w.kind === "stand_in") put(li, el("span", { "class": "sw standin" }));
    put(li, document.createTextNode(WHY_PREFIX[w.kind] === undefined ? "" : WHY_PREFIX[w.kind]));
    if (w.kind === "note") {
      put(li, document.createTextNode(w.what));
      return li;
    }
    put(li, el("span", { "class": "what", text: w.what }));
    if (w.n !== null && w.n !== undefined) {
      put(li, document.createTextNode(": "));
      put(li, el("span", { "class": "n", text: num(w.n) }));
      put(li, document.createTextNode(" " + w.unit));
    }
    if (w.detail) put(li, el("span", { "class": "detail", text: " — " + w.detail }));
    return li;
  }

  function renderFunnel(steps) {
    var s = section("funnel", "Stage funnel");
    put(s, el("p", { "class": "note", text: "generated tasks → valid tasks → rolled-out trials (with a model outcome) → kept records. Units differ between steps; under each step: where its count comes from and why tasks, trials or records left." }));
    var anyStandin = steps.some(function (st) { return st.stand_in > 0; });
    put(s, legend(anyStandin, "tasks, or a teacher model's trials / records"));
    var max = Math.max.apply(null, steps.map(function (st) { return st.count || 0; }).concat([1]));
    var box = el("div", { "class": "funnel" });
    steps.forEach(function (st) {
      var absent = st.count === null || st.count === undefined;
      var why = (st.why || []).filter(function (w) { return w.kind !== "source" || w.n !== null; });
      if (!st.why) {
        why = entries(st.drops).filter(function (e) { return e[1]; }).map(function (e) {
          return { kind: "drop", what: e[0], n: e[1], unit: st.unit };
        });
      }
      var si = st.stand_in || 0;
      var bar = absent ? null : el("div", { "class": "bar", style: "width:" + (100 * st.count / max).toFixed(2) + "%",
        title: num(st.count) + " " + st.unit + (si ? ", " + num(si) + " from a stand-in agent" : "") },
        si > 0 ? el("div", { "class": "bar-standin", "data-count": si,
          style: "width:" + (100 * Math.min(si, st.count) / Math.max(st.count, 1)).toFixed(2) + "%" }) : null);
      var body = el("div", { "class": "body" },
        el("div", null, el("span", { "class": "count", text: absent ? "—" : num(st.count) }),
          el("span", { "class": "unit", text: st.unit + (st.tasks ? " (" + num(st.tasks) + " tasks)" : "") +
            (absent ? " · not in this input" : st.from ? " · from " + st.from : "") })),
        bar,
        why.length ? el("ul", { "class": "why" }, why.map(whyItem)) : null);
      put(box, el("div", { "class": "step" + (absent ? " absent" : ""), "data-step": st.key,
        "data-count": absent ? "" : st.count }, el("div", { "class": "label", text: st.label }), body));
    });
    put(s, box);
  }

  function renderStages(run) {
    if (!run) return;
    var s = section("stages", "Run");
    if (!run.manifest) put(s, el("p", { "class": "note", text: "No run.json: stages found by their folders." }));
    put(s, el("div", { "class": "meta" }, "created " + (run.created_at || "—") + " · ttgen " + (run.ttgen_version || "—")));
    var rows = entries(run.stages).map(function (e) {
      var st = e[1] || {};
      var counts = st.counts && entries(st.counts).length ? kvTable(st.counts) : el("span", { "class": "empty", text: "—" });
      var said = [st.note ? el("div", { "class": "note", text: "note: " + st.note }) : null,
        st.error ? el("div", { "class": "warn", text: "error: " + st.error }) : null].filter(Boolean);
      return [el("tr", { "data-stage": e[0], "class": said.length ? "has-note" : null }, el("td", { text: e[0] }),
        el("td", null, el("span", { "class": "badge " + (st.status || ""), text: st.status || "—" })),
        el("td", { "class": "time" }, when(st.started_at)), el("td", { "class": "time" }, when(st.finished_at)),
        el("td", { "class": "counts" }, counts)),
        said.length ? el("tr", { "class": "stage-note", "data-note-of": e[0] }, el("td", { colspan: 5 }, said)) : null];
    });
    if (rows.length) put(s, table("stages", ["stage", "status", "started", "finished", "counts"], rows));
    if (run.config) {
      put(s, el("details", null, el("summary", { text: "configuration" }),
        el("pre", { "class": "text", text: JSON.stringify(run.config, null, 2) })));
    }
  }

  /* The records or tasks without a difficulty: no bucket of the chart, said apart (why). */
  function noDifficulty(missing, unit) {
    var e = entries(missing).filter(function (x) { return x[1]; });
    if (!e.length) return null;
    return el("p", { "class": "note no-difficulty" }, e.map(function (x) {
      return x[0] + ": " + num(x[1]) + " " + unit;
    }).join(" · ") + (missing["n/a (adapter)"] ? " (adapter tasks carry no difficulty; not counted above)" : " (not counted above)"));
  }

  function renderMix(d) {
    var kept = d.kept, tasks = d.tasks;
    if (!kept && !tasks) return;
    var s = section("mix", "Domain and difficulty mix");
    var grid = el("div", { "class": "grid2" });
    if (kept) {
      var si = kept.stand_in || {};
      put(grid, el("div", { id: "mix-kept" },
        el("h3", { text: "kept records (" + num(kept.records) + ")" }), legend(si.records > 0),
        el("h4", { text: "by domain" }), hbarChart("mix-kept-domain", entries(kept.by_domain), si.by_domain),
        el("h4", { text: "by difficulty" }), hbarChart("mix-kept-difficulty", entries(kept.by_difficulty), si.by_difficulty),
        noDifficulty(kept.no_difficulty, "records"),
        el("h4", { text: "by subset" }), hbarChart("mix-kept-subset", entries(kept.by_subset), si.by_subset),
        el("h4", { text: "by agent" }), hbarChart("mix-kept-agent", entries(kept.by_agent), si.agents)));
    }
    if (tasks) {
      var origin = entries(tasks.by_origin).map(function (e) { return e[0] + " " + num(e[1]); }).join(" · ");
      var gen = (d.funnel || []).filter(function (st) { return st.key === "generated"; })[0];
      put(grid, el("div", { id: "mix-tasks" },
        el("h3", { text: "all tasks (" + num(tasks.count) + ")" }),
        el("p", { "class": "note", text: "every task of every source: " + origin +
          (tasks.outside_run_folder ? " (" + num(tasks.outside_run_folder) + " in task folders outside the run folder)" : "") +
          ". No agent is involved: these bars are never stand-in data." }),
        gen && typeof gen.count === "number" && gen.count !== tasks.count ?
          el("p", { "class": "warn", text: "run.json counts " + num(gen.count) + " generated tasks; " + num(tasks.count) + " task folders were found" }) : null,
        el("h4", { text: "by pipeline source" }), hbarChart("mix-tasks-origin", entries(tasks.by_origin)),
        el("h4", { text: "by domain" }), hbarChart("mix-tasks-domain", entries(tasks.by_domain)),
        el("h4", { text: "by difficulty" }), hbarChart("mix-tasks-difficulty", entries(tasks.by_difficulty)),
        noDifficulty(tasks.no_difficulty, "tasks"),
        el("h4", { text: "by subset" }), hbarChart("mix-tasks-subset", entries(tasks.by_subset)),
        tasks.unreadable ? el("p", { "class": "warn", text: num(tasks.unreadable) + " task.toml file(s) could not be read" }) : null));
    }
    put(s, grid);
  }

  function distText(dist) {
    if (!dist || !dist.n) return "no data";
    return "n " + num(dist.n) + " · mean " + num(dist.mean) + " · median " + num(dist.median) +
      " · min " + num(dist.min) + " · max " + num(dist.max);
  }

  function renderDistributions(kept) {
    if (!kept) return;
    var s = section("distributions", "Token and turn distributions of the kept records");
    var si = kept.stand_in || {};
    put(s, legend(si.records > 0));
    var by = entries(kept.tokens_counted_by).map(function (e) { return e[0] + " " + num(e[1]); }).join(", ");
    var grid = el("div", { "class": "grid2" });
    var tok = kept.tokens || {};
    put(grid, el("div", null, el("h3", { text: "tokens per trajectory (bins of 5K)" }),
      tok.histogram ? barChart("hist-tokens", kept.token_bins, tok.histogram, si.tokens_histogram, "tokens") :
        el("p", { "class": "empty", text: "no token counts" }),
      el("p", { "class": "note", text: distText(tok) + (by ? " · counted by: " + by : "") +
        (by.indexOf("estimate") >= 0 ? " (estimate: UTF-8 bytes / 3.6)" : "") })));
    var tu = kept.turns || {};
    put(grid, el("div", null, el("h3", { text: "assistant turns per trajectory (bins of 5)" }),
      tu.histogram ? barChart("hist-turns", kept.turn_bins, tu.histogram, si.turns_histogram, "turns") :
        el("p", { "class": "empty", text: "no turns" }),
      el("p", { "class": "note", text: distText(tu) })));
    put(s, grid);
    put(s, el("div", { "class": "cards" },
      card(pct(kept.completion_rate), "completion rate (teacher confirmed task_complete)"),
      card(pct(kept.success_rate), "success rate (reward 1, of " + num(kept.verified) + " verified)")));
    var cur = kept.curation;
    if (cur) {
      var rows = entries(cur.dropped).map(function (e) {
        var ex = (kept.dropped_examples || {})[e[0]] || [];
        return el("tr", { "data-reason": e[0] }, el("td", { text: e[0] }), el("td", { "class": "num", text: num(e[1]) }),
          el("td", null, ex.map(function (x) { return el("div", { "class": "note", text: (x.task || x.id) + (x.detail ? ": " + x.detail : "") }); })));
      });
      put(s, el("h3", { text: "curation: " + num(cur.trials) + " trials, " + num(cur.records_in) +
        " records read, " + num(cur.kept) + " kept" }));
      if (rows.length) put(s, table("curation-drops", ["dropped because", { label: "count", num: true }, "examples"], rows));
      var dec = cur.decontamination || {};
      if (dec.enabled) {
        put(s, el("p", { "class": "note", text: "decontamination (" + dec.ngram + "-gram): " + num(dec.tasks_matched) +
          " task(s) matched, " + num(dec.records_dropped) + " record(s) dropped" }));
      }
    }
  }

  function renderRollouts(r) {
    if (!r) return;
    var s = section("rollouts", "Rollouts");
    put(s, el("div", { "class": "cards" },
      card(num(r.trials), "trials", { id: "card-trials" }),
      card(num(r.model_outcome_trials), "with a model outcome"),
      card(num(r.infra_trials + r.unfinished), "infrastructure / unfinished"),
      card(num(r.tasks), "tasks"),
      card(pct(r.pass_rate), "pass rate (" + num(r.passed) + " of " + num(r.scored) + " scored)", { id: "card-pass-rate" }),
      r.stand_in_trials ? card(pct(r.teacher_pass_rate), "pass rate without stand-in agents (" + num(r.teacher_passed) + " of " +
        num(r.teacher_scored) + ")", { id: "card-teacher-pass-rate" }) : null,
      r.job && r.job.pass_at_k ? card(entries(r.job.pass_at_k).map(function (e) { return "@" + e[0] + " " + e[1].toFixed(3); }).join("  "), "pass@k (job)") : null));
    // outcomes
    put(s, el("h3", { text: "outcomes" }));
    var rows = [], finished = r.finished + r.unfinished;
    var model = r.outcome_table.filter(function (o) { return !o.infra; });
    var infra = r.outcome_table.filter(function (o) { return o.infra; });
    function orow(o) {
      return el("tr", { "class": o.infra ? "infra" : null, "data-outcome": o.outcome },
        el("td", null, outcomeBadge(o.outcome, o.infra)),
        el("td", { "class": "num", text: num(o.trials) }),
        el("td", { "class": "num", text: pct(finished ? o.trials / finished : null) }),
        el("td", { "class": "num" }, o.stand_in ? standinBadge(null) : null, o.stand_in ? num(o.stand_in) : "—"));
    }
    if (model.length) rows.push(el("tr", { "class": "group" }, el("td", { colspan: 4, text: "model outcomes" })));
    model.forEach(function (o) { rows.push(orow(o)); });
    if (infra.length) rows.push(el("tr", { "class": "group" }, el("td", { colspan: 4, text: "infrastructure outcomes (never the model's failure; never data)" })));
    infra.forEach(function (o) { rows.push(orow(o)); });
    put(s, table("outcomes", ["outcome", { label: "trials", num: true }, { label: "share", num: true }, { label: "from a stand-in agent", num: true }], rows, "outcomes"));
    if (r.infra_reasons && r.infra_reasons.length) {
      put(s, el("details", null, el("summary", { text: "infrastructure errors by type" }),
        el("ul", null, r.infra_reasons.map(function (e) { return el("li", { text: e[0] + ": " + num(e[1]) }); }))));
    }
    // pass rates by domain
    put(s, el("h3", { text: "pass rates by domain" }));
    put(s, el("p", { "class": "note", text: "pass rate = trials with reward 1 / scored trials (model outcomes of tasks with tests; a missing reward counts as 0). Infrastructure outcomes and unverified trials are left out." }));
    put(s, legend(r.stand_in_trials > 0, "pass rate of a teacher model", "good"));
    var drows = r.by_domain.map(function (row) {
      return el("tr", { "class": row.stand_in ? "standin" : null, "data-domain": row.domain, "data-subset": row.subset, "data-stand-in": row.stand_in ? "1" : "0" },
        el("td", { text: row.subset }), el("td", null, row.domain + " ", row.stand_in ? standinBadge(row.agents.join(", ")) : null),
        el("td", { text: row.agents.join(", ") }),
        el("td", { "class": "num", text: num(row.trials) }), el("td", { "class": "num", text: num(row.scored) }),
        el("td", { "class": "num", text: num(row.passed) }),
        el("td", { "class": "num pass-rate" }, el("span", { "class": "rate" + (row.stand_in ? " standin" : "") }, el("span", { style: "width:" + ((row.pass_rate || 0) * 100).toFixed(1) + "%" })), pct(row.pass_rate)),
        el("td", { "class": "num", text: num(row.unverified) }), el("td", { "class": "num", text: num(row.infra) }));
    });
    var pt = table("pass-rates", ["subset", "domain", "agents", { label: "trials", num: true }, { label: "scored", num: true },
      { label: "passed", num: true }, { label: "pass rate", num: true }, { label: "unverified", num: true }, { label: "infra", num: true }], drows, "pass-rates");
    put(s, pt);
    // agents
    put(s, el("h3", { text: "by agent" }));
    var at = table("agents", ["agent", "models", { label: "trials", num: true }, { label: "scored", num: true }, { label: "pass rate", num: true }],
      r.by_agent.map(function (a) {
        return el("tr", { "class": a.stand_in ? "standin" : null, "data-agent": a.agent },
          el("td", null, a.agent + " ", a.stand_in ? standinBadge(null) : null),
          el("td", { text: entries(a.models).map(function (e) { return e[0]; }).join(", ") || "—" }),
          el("td", { "class": "num", text: num(a.trials) }), el("td", { "class": "num", text: num(a.scored) }),
          el("td", { "class": "num", text: pct(a.pass_rate) }));
      }), "agents");
    put(s, at);
    // cost
    var c = r.cost || {};
    var cs = el("div", { id: "cost" }, el("h3", { text: "cost" }), el("div", { "class": "cards" },
      card(usd(c.cost_usd), "cost (USD, " + num(c.trials_with_cost) + " trials priced)", { id: "cost-usd", "data-value": c.cost_usd === null ? "" : c.cost_usd }),
      card(usd(c.per_trial_usd), "per priced trial"),
      card(num(c.n_input_tokens), "input tokens", { id: "tokens-in" }),
      card(num(c.n_output_tokens), "output tokens", { id: "tokens-out" }),
      card(num(c.n_cache_tokens), "cached input tokens")));
    put(s, cs);
  }

  function renderValidation(v) {
    if (!v) return;
    var s = section("validation", "Validation");
    put(s, el("p", { "class": "note", text: num(v.tasks) + " task(s) validated; " + num(v.good) +
      " kept (" + v.good_verdicts.join(", ") + ")" }));
    var good = {};
    v.good_verdicts.forEach(function (g) { good[g] = true; });
    var vt = table("verdicts", ["verdict", { label: "tasks", num: true }, "reasons (most common)"], entries(v.verdicts).map(function (e) {
      return el("tr", { "data-verdict": e[0], "class": good[e[0]] ? null : "infra" },
        el("td", null, el("span", { "class": "badge " + (good[e[0]] ? "done" : "failed"), text: e[0] })),
        el("td", { "class": "num", text: num(e[1]) }),
        el("td", null, ((v.reasons || {})[e[0]] || []).map(function (r) { return el("div", { "class": "note", text: r[0] + " (" + r[1] + ")" }); })));
    }), "verdicts");
    put(s, vt);
  }

  function renderExport(x) {
    if (!x) return;
    var s = section("export", "Export");
    if (!x.files.length) { put(s, el("p", { "class": "empty", text: "no exported files" })); return; }
    put(s, table("export", ["file", "format", { label: "rows", num: true }, { label: "tokens", num: true },
      { label: "trained tokens", num: true }, { label: "truncated", num: true }], x.files.map(function (f) {
      return el("tr", { "data-file": f.file }, el("td", null, el("code", { text: f.file })), el("td", { text: f.format || "—" }),
        el("td", { "class": "num", text: num(f.rows) }), el("td", { "class": "num", text: num(f.tokens) }),
        el("td", { "class": "num", text: num(f.trained_tokens) }), el("td", { "class": "num", text: num(f.truncated) }));
    })));
  }

  /* A line chart of [x, y] points (the loss per optimizer step). */
  function lineChart(id, points, caption) {
    var W = 640, H = 240, top = 14, bottom = 34, left = 52, right = 12;
    var xs = points.map(function (p) { return p[0]; }), ys = points.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys.concat([0])), y1 = Math.max.apply(null, ys);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) y1 = y0 + 1;
    function X(v) { return left + (W - left - right) * (v - x0) / (x1 - x0); }
    function Y(v) { return H - bottom - (H - top - bottom) * (v - y0) / (y1 - y0); }
    var svg = sv("svg", { id: id, "class": "chart line", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": caption || id });
    put(svg, sv("line", { "class": "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
    put(svg, sv("line", { "class": "axis", x1: left, x2: left, y1: top, y2: H - bottom }));
    [y0, (y0 + y1) / 2, y1].forEach(function (v) {
      put(svg, sv("text", { x: left - 6, y: Y(v) + 4, "text-anchor": "end", text: v.toFixed(2) }));
    });
    [x0, x1].forEach(function (v) {
      put(svg, sv("text", { x: X(v), y: H - bottom + 16, "text-anchor": "middle", text: num(v) }));
    });
    put(svg, sv("text", { x: (left + W - right) / 2, y: H - 4, "text-anchor": "middle", text: "optimizer step" }));
    var d = points.map(function (p, i) { return (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1); }).join(" ");
    put(svg, sv("path", { "class": "curve", d: d, "data-points": points.length }));
    return svg;
  }

  function fixed(x, n) { return x === null || x === undefined ? "—" : Number(x).toFixed(n); }

  function renderTraining(t) {
    if (!t) return;
    var s = section("training", "Training");
    put(s, el("div", { "class": "cards" },
      card(num(t.steps), "optimizer steps"),
      card(fixed(t.first_loss, 3) + " → " + fixed(t.last_loss, 3), "loss on trained tokens (mean of first / last " + t.window + " steps)"),
      card(t.tokens_per_sec === null || t.tokens_per_sec === undefined ? "—" : num(Math.round(t.tokens_per_sec)), "tokens/s"),
      card((t.preset || "—") + " · " + (t.backend || "—"), "preset · backend")));
    if (t.curve && t.curve.length) {
      put(s, lineChart("loss-curve", t.curve, "training loss per optimizer step"));
    } else {
      put(s, el("p", { "class": "empty", text: "no training steps recorded" }));
    }
    put(s, el("p", { "class": "note", text: "model: " + (t.model || "—") + (t.final_model ? " · checkpoint: " + t.final_model : " · no final checkpoint yet") }));
  }

  function renderEval(e) {
    if (!e) return;
    var s = section("eval", "Evaluation");
    var acc = e.accuracy === null || e.accuracy === undefined ? "—" :
      pct(e.accuracy) + (e.accuracy_se !== null && e.accuracy_se !== undefined ? " ± " + (e.accuracy_se * 100).toFixed(1) : "");
    put(s, el("div", { "class": "cards" },
      card(acc, "accuracy (" + num(e.n_passed) + " of " + num(e.n_trials) + " trials)"),
      card(num(e.n_tasks), "tasks × k=" + num(e.k)),
      card(num(e.n_missing), "missing (infrastructure)"),
      card(e.model || e.agent || "—", "model")));
    var rows = entries(e.categories).map(function (c) {
      var f = c[1] || {};
      return el("tr", { "data-category": c[0] }, el("td", { text: c[0] }), el("td", { "class": "num", text: num(f.n_tasks) }),
        el("td", { "class": "num", text: num(f.n_trials) }), el("td", { "class": "num", text: num(f.n_passed) }),
        el("td", { "class": "num", text: pct(f.accuracy) }));
    });
    put(s, table("eval", ["category", { label: "tasks", num: true }, { label: "trials", num: true },
      { label: "passed", num: true }, { label: "accuracy", num: true }], rows, "eval-table"));
    var outcomes = entries(e.outcomes).map(function (o) { return (OUTCOME_LABEL[o[0]] || o[0]) + " " + num(o[1]); }).join(" · ");
    put(s, el("p", { "class": "note", text: "outcomes: " + (outcomes || "none") + (e.checkpoint ? " · checkpoint: " + e.checkpoint : "") }));
  }

  function renderProblems(d) {
    var list = [];
    if (d.kept) list = list.concat(d.kept.problems || []);
    if (d.validation) list = list.concat(d.validation.problems || []);
    if (d.training) list = list.concat(d.training.problems || []);
    list = list.concat((d.trajectories || {}).problems || []);
    if (!list.length) return;
    var s = section("problems", "Problems while reading");
    put(s, el("ul", null, list.map(function (p) { return el("li", { text: p }); })));
  }

  // -- trajectory viewer -----------------------------------------------------------------------

  var V = { items: [], shown: [], traj: -1, turn: 0, list: null, view: null };

  function keystrokes(text) {
    var pre = el("pre", { "class": "keys" });
    text.split("\n").forEach(function (part, i, parts) {
      if (part) put(pre, document.createTextNode(part));
      if (i < parts.length - 1) {
        put(pre, el("span", { "class": "enter", title: "Enter (newline)", text: "↵" }));
        put(pre, document.createTextNode("\n"));
      }
    });
    return pre;
  }

  function field(key, value) {
    if (value === null || value === undefined || value === "") return null;
    return el("div", { "class": "field field-" + key }, el("div", { "class": "k", text: key }), el("div", { "class": "v", text: value }));
  }

  function renderTurn(item, idx) {
    var t = item.turns[idx];
    var a = t.assistant || {};
    var box = el("div", { "class": "turn", id: "turn", "data-turn": t.n });
    var prev = idx > 0 ? item.turns[idx - 1].n : 0;
    if (t.n - prev > 1) {
      put(box, el("p", { "class": "warn", text: "turns " + (prev + 1) + "–" + (t.n - 1) + " are not in the report (long trajectory)" }));
    }
    put(box, el("h4", { text: "assistant (turn " + t.n + ")" }));
    if (a.think !== null && a.think !== undefined) {
      put(box, el("details", { "class": "think" }, el("summary", { text: "reasoning (<think>, " + num(a.think.length) + " characters)" }),
        el("pre", { "class": "think", text: a.think })));
    }
    if (a.format === "json" || a.format === "xml") {
      var action = el("div", { "class": "action", "data-format": a.format });
      put(action, field("analysis", a.analysis));
      put(action, field("plan", a.plan));
      var cmds = a.commands || [];
      put(action, el("div", { "class": "field field-commands" }, el("div", { "class": "k", text: "commands (" + cmds.length + ")" }),
        cmds.length ? el("ol", { "class": "commands" }, cmds.map(function (c) {
          return el("li", null, keystrokes(c.keystrokes), el("span", { "class": "duration", text: "wait " + c.duration + " s" }));
        })) : el("div", { "class": "empty", text: "no commands" })));
      if (a.task_complete) put(action, el("div", null, el("span", { "class": "badge o-passed", text: "task_complete: true" })));
      (a.warnings || []).forEach(function (w) { put(action, el("div", { "class": "warn", text: "parser: " + w })); });
      put(box, action);
    } else {
      if (a.error) put(box, el("div", { "class": "warn", text: "not a valid action: " + a.error }));
      put(box, el("pre", { "class": "text", text: a.text || "" }));
    }
    put(box, el("h4", { text: "terminal output (the next user message, as the model saw it)" }));
    if (t.observation === null || t.observation === undefined) {
      put(box, el("p", { "class": "empty", text: "none: the conversation ends with this turn" }));
    } else {
      put(box, el("pre", { "class": "term", id: "observation", text: t.observation }));
    }
    return box;
  }

  function setHash() {
    try {
      history.replaceState(null, "", "#traj=" + V.traj + "&turn=" + (V.turn + 1));
    } catch (e) { /* some file:// setups refuse; the viewer works without it */ }
  }

  function showTraj(index, turn) {
    var item = V.items[index];
    if (!item) return;
    V.traj = index;
    V.turn = Math.max(0, Math.min(turn || 0, item.turns.length - 1));
    Array.prototype.forEach.call(V.list.children, function (li) {
      li.classList.toggle("current", Number(li.getAttribute("data-index")) === index);
    });
    clear(V.view);
    V.view.setAttribute("data-traj", index);
    V.view.setAttribute("data-id", item.id || "");
    var head = el("div", { "class": "traj-head" },
      el("span", { "class": "badge " + item.kind, text: item.kind === "record" ? "kept record" : "rollout trial" }),
      outcomeBadge(item.outcome, false),
      item.stand_in ? standinBadge(item.agent) : null,
      el("span", { "class": "badge", text: "reward " + (item.reward === null || item.reward === undefined ? "—" : item.reward) }),
      el("span", { "class": "badge", text: (item.agent || "?") + (item.model ? " · " + item.model : "") }),
      item.source ? el("span", { "class": "badge", text: item.source }) : null);
    put(V.view, el("h3", { id: "traj-title", text: item.task || item.id }));
    put(V.view, el("div", { "class": "meta", text: item.id }));
    put(V.view, head);
    if (item.stand_in) {
      put(V.view, el("div", { "class": "standin-banner", id: "traj-standin", text: "STAND-IN: this conversation comes from the " +
        (item.agent || "stand-in") + " agent standing in for a teacher model. It shows the pipeline working; it is not teacher data." }));
    }
    if (item.exception) put(V.view, el("div", { "class": "warn", text: item.exception }));
    if (item.omitted_turns || item.chars_cut) {
      put(V.view, el("p", { "class": "note", text: "Cut to keep the report small: " +
        (item.omitted_turns ? num(item.omitted_turns) + " middle turn(s) left out; " : "") +
        (item.chars_cut ? num(item.chars_cut) + " characters of long texts cut (marked in place)." : "") }));
    }
    if (item.instruction) put(V.view, el("details", null, el("summary", { text: "task instruction" }), el("pre", { "class": "text", id: "instruction", text: item.instruction })));
    if (item.system) put(V.view, el("details", null, el("summary", { text: "system message" }), el("pre", { "class": "text", text: item.system })));
    if (item.prompt) put(V.view, el("details", null, el("summary", { text: "first user message (the prompt)" }), el("pre", { "class": "term", id: "prompt", text: item.prompt })));
    var prevB = el("button", { type: "button", id: "prev", text: "◀ prev", onclick: function () { step(-1); } });
    var nextB = el("button", { type: "button", id: "next", text: "next ▶", onclick: function () { step(1); } });
    var pos = el("span", { "class": "pos", id: "turn-pos" });
    put(V.view, el("div", { "class": "nav" }, prevB, pos, nextB, el("span", { "class": "hint", text: "← → keys step through the turns" })));
    var holder = el("div", { id: "turn-holder" });
    put(V.view, holder);
    V.prevB = prevB; V.nextB = nextB; V.pos = pos; V.holder = holder;
    drawTurn();
  }

  function drawTurn() {
    var item = V.items[V.traj];
    clear(V.holder);
    if (!item.turns.length) {
      V.pos.textContent = "no turns";
      V.prevB.disabled = V.nextB.disabled = true;
      return;
    }
    var t = item.turns[V.turn];
    V.pos.textContent = "turn " + t.n + " of " + item.n_turns;
    V.pos.setAttribute("data-turn", t.n);
    V.prevB.disabled = V.turn === 0;
    V.nextB.disabled = V.turn >= item.turns.length - 1;
    put(V.holder, renderTurn(item, V.turn));
    setHash();
  }

  function step(delta) {
    var item = V.items[V.traj];
    if (!item) return;
    var next = V.turn + delta;
    if (next < 0 || next >= item.turns.length) return;
    V.turn = next;
    drawTurn();
  }

  function applyFilters() {
    var kind = document.getElementById("f-kind").value;
    var outcome = document.getElementById("f-outcome").value;
    var task = document.getElementById("f-task").value.trim().toLowerCase();
    var n = 0;
    Array.prototype.forEach.call(V.list.children, function (li) {
      var it = V.items[Number(li.getAttribute("data-index"))];
      var ok = (kind === "all" || it.kind === kind || (kind === "standin" && it.stand_in)) &&
        (outcome === "all" || it.outcome === outcome) &&
        (!task || String(it.task || "").toLowerCase().indexOf(task) >= 0 || String(it.id || "").toLowerCase().indexOf(task) >= 0);
      li.hidden = !ok;
      n += ok ? 1 : 0;
    });
    document.getElementById("f-count").textContent = n + " of " + V.items.length + " shown";
  }

  function renderViewer(tr) {
    var s = section("viewer", "Trajectories");
    V.items = (tr && tr.items) || [];
    put(s, el("p", { "class": "note", text: "A deterministic sample (" + (tr.sample || "") + ") of " + num(V.items.length) +
      " trajectories: kept records (" + num(tr.records_total) + " in all) and rollout trials with a conversation (" +
      num(tr.trials_with_conversation) + " in all); at most " + num(tr.max) + ", texts over " + num(tr.max_chars) +
      " characters cut. Open with #traj=N&turn=M to jump to a turn." }));
    if (!V.items.length) {
      put(s, el("p", { "class": "empty", text: "No conversations in this input." }));
      return;
    }
    var outcomes = {};
    V.items.forEach(function (it) { outcomes[it.outcome] = (outcomes[it.outcome] || 0) + 1; });
    var anyStandin = V.items.some(function (it) { return it.stand_in; });
    var filters = el("div", { "class": "filters" },
      el("label", null, "show", el("select", { id: "f-kind", onchange: applyFilters },
        el("option", { value: "all", text: "all" }), el("option", { value: "record", text: "kept records" }),
        el("option", { value: "trial", text: "rollout trials" }),
        anyStandin ? el("option", { value: "standin", text: "stand-in agents only" }) : null)),
      el("label", null, "outcome", el("select", { id: "f-outcome", onchange: applyFilters },
        el("option", { value: "all", text: "all" }),
        Object.keys(outcomes).sort().map(function (o) { return el("option", { value: o, text: (OUTCOME_LABEL[o] || o) + " (" + outcomes[o] + ")" }); }))),
      el("label", null, "task or id contains", el("input", { id: "f-task", type: "search", oninput: applyFilters })),
      el("div", { "class": "note", id: "f-count" }));
    V.list = el("ul", { "class": "traj-list", id: "traj-list" }, V.items.map(function (it, i) {
      return el("li", { "data-index": i, "data-kind": it.kind, "data-outcome": it.outcome, "class": it.stand_in ? "standin" : null },
        el("button", { type: "button", onclick: function () { showTraj(i, 0); } },
          el("span", { "class": "t", text: it.task || it.id }),
          el("span", { "class": "note id", text: String(it.id || "").split("/").pop() }),
          el("span", { "class": "badge " + it.kind, text: it.kind === "record" ? "kept" : "trial" }),
          outcomeBadge(it.outcome, false), it.stand_in ? standinBadge(it.agent) : null,
          el("span", { "class": "note", text: num(it.n_turns) + " turns" })));
    }));
    V.view = el("div", { id: "traj-view", "class": "traj-view" });
    put(s, el("div", { "class": "viewer" }, el("div", null, filters, V.list), V.view));
    applyFilters();
    document.addEventListener("keydown", function (e) {
      var tag = (e.target && e.target.tagName) || "";
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
      else if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
    });
    window.addEventListener("hashchange", fromHash);
    if (!fromHash()) showTraj(0, 0);
  }

  /* #traj=N (index, or a trajectory id) &turn=M (1-based position among the shown turns). */
  function fromHash() {
    var h = (location.hash || "").replace(/^#/, "");
    if (!h) return false;
    var params = new URLSearchParams(h);
    var t = params.get("traj");
    if (t === null) return false;
    var index = /^\d+$/.test(t) ? Number(t) : V.items.findIndex(function (it) { return it.id === t; });
    if (index < 0 || index >= V.items.length) return false;
    var turn = Number(params.get("turn") || "1");
    if (!(turn >= 1)) turn = 1;
    if (index === V.traj && V.view.firstChild) {
      V.turn = Math.max(0, Math.min(turn - 1, V.items[index].turns.length - 1));
      drawTurn();
    } else {
      showTraj(index, turn - 1);
    }
    replay(params.get("press") || "");
    return true;
  }

  /* &press=… replays input after loading: R/L = the right/left arrow keys, n/p = a click on
   * next/prev (lets a headless browser step the viewer the way a reader does). */
  function replay(keys) {
    keys.split("").forEach(function (k) {
      if (k === "R" || k === "L") {
        document.dispatchEvent(new KeyboardEvent("keydown", { key: k === "R" ? "ArrowRight" : "ArrowLeft", bubbles: true }));
      } else if (k === "n" || k === "p") {
        var b = document.getElementById(k === "n" ? "next" : "prev");
        if (b) b.click();
      }
    });
  }

  // -- main ------------------------------------------------------------------------------------

  function main() {
    var data = JSON.parse(document.getElementById("report-data").textContent);
    renderHeader(data);
    renderFunnel(data.funnel || []);
    renderStages(data.run);
    renderMix(data);
    renderDistributions(data.kept);
    renderRollouts(data.rollouts);
    renderValidation(data.validation);
    renderExport(data.export);
    renderTraining(data.training);
    renderEval(data.eval);
    renderViewer(data.trajectories || {});
    renderProblems(data);
  }

  try {
    main();
    document.body.setAttribute("data-ready", "1");
  } catch (e) {
    window.ttgenReportError((e && e.stack) || e);
    document.body.setAttribute("data-ready", "error");
  }
})();
