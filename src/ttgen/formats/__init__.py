"""The contracts between stages, on the ground floor: every layer may import them, they import
only the other ground-floor modules (errors, fileio, task).

* trial.py: a trial's config.json and result.json (Harbor's TrialConfig/TrialResult shapes plus
  ttgen's fields), outcomes, reading Harbor's results, job folders;
* record.py: the curated record (one trajectory with its provenance) that curate writes and
  export, stats, report and train read.
"""
