"""What Terminus 2 shows the model of the terminal, as plain text functions: the observation's
length limit (middle-out over UTF-8 bytes) and the new part of a full-history capture, both by
Harbor's exact rules."""

from __future__ import annotations

MAX_OUTPUT_BYTES = 10_000  # Terminus 2's limit on every observation


def limit_output_length(text: str, max_bytes: int = MAX_OUTPUT_BYTES) -> str:
    """Terminus 2's middle-out truncation, over UTF-8 bytes.

    Text of at most `max_bytes` bytes comes back unchanged. Longer text keeps its first and last
    ``max_bytes // 2`` bytes (a character cut in two at either edge is dropped), joined by
    ``\\n[... output limited to {max_bytes} bytes; {N} interior bytes omitted ...]\\n``, where N
    counts every byte not kept (including those of a dropped half character).
    """
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= max_bytes:
        return text
    half = max_bytes // 2
    head = data[:half].decode("utf-8", errors="ignore")
    tail = data[len(data) - half :].decode("utf-8", errors="ignore") if half else ""
    omitted = len(data) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return (
        f"{head}\n[... output limited to {max_bytes} bytes; {omitted} interior bytes omitted ...]"
        f"\n{tail}"
    )


def find_new_content(previous: str, current: str) -> str | None:
    """The part of `current` (a full-history capture) that follows `previous`, as Harbor finds it.

    Harbor's rule, reproduced exactly: ``pb = previous.strip()`` (so the blank rows below the
    prompt, and any leading blank lines, do not count); if `pb` does not occur in `current` the
    answer is None. Otherwise the new part starts at offset ``pb.rfind("\\n")`` of `current` when
    `pb` has several lines, else at the offset where `pb` occurs. Since the history normally
    starts with `pb` itself, that offset is the newline before the previous capture's last line:
    the new part begins with that newline and the old prompt line (now showing the command typed
    at it), and ends with the current screen's blank rows. If the previous capture had leading
    whitespace, the offset is shifted by its length, exactly as in Harbor.
    """
    pb = previous.strip()
    if pb not in current:
        return None
    idx = current.index(pb)
    if "\n" in pb:
        idx = pb.rfind("\n")
    return current[idx:]
