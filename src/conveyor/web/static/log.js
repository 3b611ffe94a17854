"use strict";
// A job's log: its tail first (a long log is usable at once; earlier pieces load on
// demand), then followed from the last offset while the job runs. Bytes are decoded as
// one UTF-8 stream, so a character split between two pieces stays whole; an offset is
// all it takes to carry on after the server comes back.
(() => {
  const { $, el, setText, badge, path, taskUrl, base } = CV;
  const m = location.pathname.match(/\/workflows\/([^/]+)\/tasks\/(\d+)\/jobs\/(\d+)\/?$/);
  const name = decodeURIComponent(m[1]), id = Number(m[2]), jobId = Number(m[3]);
  const logApi = `/api/workflows/${path(name)}/tasks/${id}/jobs/${jobId}/log`;
  const TAIL = 256 * 1024;
  const box = $("log");
  const ansi = new AnsiText(), decoder = new TextDecoder("utf-8");
  let next = null, start = null, line = 1, openLine = null, follow = true, shown = false;
  $("crumbs").append(" / ", el("a", { href: `${base}/workflows/${path(name)}`, text: name }),
    " / ", el("a", { href: taskUrl(name, id), text: `#${id}` }), " / log");
  $("raw").href = `${base}${logApi}/raw`;

  const atEnd = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40;
  window.addEventListener("scroll", () => { follow = atEnd(); $("jump").hidden = follow || !shown; });
  $("jump").addEventListener("click", () => { follow = true; toEnd(); });
  function toEnd() { window.scrollTo(0, document.documentElement.scrollHeight); $("jump").hidden = true; }

  function lineNode(n, segments) {
    const div = el("div", { class: "ln" }, el("span", { class: "no", "data-n": n }));
    div.append(AnsiText.render(segments));
    return div;
  }
  function append(text) {
    const ended = ansi.feed(text);
    const frag = document.createDocumentFragment();
    if (openLine) { openLine.remove(); openLine = null; }
    for (const segments of ended) frag.append(lineNode(line++, segments));
    if (ansi.open.length) { openLine = lineNode(line, ansi.open); frag.append(openLine); }
    box.append(frag);
  }

  async function piece(query) {
    const r = await CV.request(`${logApi}?${query}`);
    const h = (k) => r.headers.get(k);
    return { bytes: await r.arrayBuffer(), next: Number(h("X-Next-Offset")), size: Number(h("X-Log-Size")),
      start: Number(h("X-Log-Start")), line: Number(h("X-Log-Line") || 0),
      complete: h("X-Log-Complete") === "true", status: h("X-Job-Status") };
  }
  function earlierButton() {
    const b = $("earlier");
    b.hidden = start <= 0;
    setText(b, `Show earlier lines (${Math.ceil(start / 1024)} KiB)`);
  }
  $("earlier").addEventListener("click", async () => {
    const button = $("earlier");
    if (button.disabled) return;
    button.disabled = true;
    try { await earlier(); } catch (e) {
      if (!(e instanceof CV.ApiError && e.status === 401)) {
        CV.problem(e instanceof CV.Offline ? "The server cannot be reached; try again." : e.message);
      }
    } finally { button.disabled = false; }
  });
  async function earlier() {
    const p = await piece(`before=${start}`);
    // An earlier piece starts at a line's start and ends where the shown text begins.
    const own = new AnsiText(), text = new TextDecoder("utf-8").decode(p.bytes);
    const lines = own.feed(text);
    if (own.open.length) lines.push(own.open);
    const frag = document.createDocumentFragment();
    lines.forEach((segments, k) => frag.append(lineNode(p.line + k, segments)));
    const before = document.documentElement.scrollHeight;
    box.prepend(frag);
    window.scrollBy(0, document.documentElement.scrollHeight - before);  // keep the view still
    start = p.start; earlierButton();
  }

  function showStatus(status, complete, size) {
    badge($("status"), status);
    setText($("size"), `${(size / 1024).toFixed(size < 10240 ? 1 : 0)} KiB${complete ? "" : " so far"}`);
    $("ended").hidden = !complete;
    setText($("ended"), complete ? `The job ended: ${status}.` : "");
  }

  async function header() {
    const t = await CV.json(`/api/workflows/${path(name)}/tasks/${id}`);
    const job = t.jobs.find((j) => j.id === jobId);
    if (!job) { CV.problem(`task ${name} #${id} has no job ${jobId}`); return; }
    const title = `${job.stage} ${job.service}, attempt ${job.attempt}`;
    setText($("name"), `${name} #${id}: ${title}`);
    document.title = `${title} · ${name} #${id} — Conveyor`;
  }

  let live = null;
  CV.page(() => {
    header().catch(() => {});
    if (live) live.now(); else live = CV.poll(step, 500);
  });
  async function step() {
    const p = next === null ? await piece(`before=end&limit=${TAIL}`) : await piece(`offset=${next}`);
    if (next === null) { start = p.start; line = p.line; earlierButton(); }
    const wasAtEnd = follow;
    if (p.bytes.byteLength) append(decoder.decode(p.bytes, { stream: !p.complete }));
    else if (p.complete) append(decoder.decode());
    next = p.next;
    showStatus(p.status, p.complete, p.size);
    if (!shown || (wasAtEnd && p.bytes.byteLength)) { shown = true; toEnd(); }
    if (p.complete) { if (ansi.rest) append("\n"); return false; }
    return p.bytes.byteLength ? 1 : 500;  // catch up at once; wait when there is nothing new
  }
})();
