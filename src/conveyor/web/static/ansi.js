"use strict";
// A terminal's output as lines of styled text: ANSI SGR colours and styles (16, 256 and
// 24-bit colours), other escape sequences dropped, `\r` rewriting the line as a
// progress bar does. Text arrives in pieces; an escape cut between two is kept until
// the rest arrives. The text becomes DOM text, never markup.
class AnsiText {
  constructor() {
    this.style = {};
    this.open = [];     // the segments of the line not yet ended by "\n"
    this.rest = "";     // an unfinished escape sequence, or a "\r" that may precede "\n"
  }

  // Feeds `text`; returns the lines it ended, each a list of [text, style] segments.
  feed(text) {
    const s = this.rest + text, lines = [];
    this.rest = "";
    let i = 0, plain = "";
    const flush = () => { if (plain) { this.open.push([plain, this.style]); plain = ""; } };
    while (i < s.length) {
      const c = s[i];
      if (c === "\n") { flush(); lines.push(this.open); this.open = []; i++; continue; }
      if (c === "\r") {
        let j = i + 1;
        while (j < s.length && s[j] === "\r") j++;
        if (j === s.length) { this.rest = "\r"; break; }  // "\r\n" may be cut in two
        if (s[j] !== "\n") { plain = ""; this.open = []; }  // back to the line's start
        i = j; continue;
      }
      if (c === "\x1b") {
        const end = this.escapeEnd(s, i);
        if (end < 0) { this.rest = s.slice(i); break; }
        flush();
        if (s[i + 1] === "[" && s[end - 1] === "m") this.sgr(s.slice(i + 2, end - 1));
        i = end; continue;
      }
      if (c < " " && c !== "\t") { i++; continue; }  // other control characters: dropped
      plain += c; i++;
    }
    flush();
    return lines;
  }

  // Where the escape sequence at `i` ends (the index after it); -1 if `s` ends first.
  escapeEnd(s, i) {
    if (i + 1 >= s.length) return -1;
    const kind = s[i + 1];
    if (kind === "[") {
      for (let j = i + 2; j < s.length; j++) {
        const code = s.charCodeAt(j);
        if (code >= 0x40 && code <= 0x7e) return j + 1;
        if (j - i > 64) return j + 1;  // not a sequence any terminal sends: give up on it
      }
      return -1;
    }
    if (kind === "]") {  // OSC: a title or a link, up to BEL or ESC \
      for (let j = i + 2; j < s.length; j++) {
        if (s[j] === "\x07") return j + 1;
        if (s[j] === "\x1b" && j + 1 < s.length) return j + 2;
        if (j - i > 4096) return j + 1;
      }
      return -1;
    }
    // A character set's choice (ESC ( B, which `tput sgr0` writes) has one more byte.
    if ("()*+-./#%".includes(kind)) return i + 2 < s.length ? i + 3 : -1;
    return i + 2;
  }

  sgr(params) {
    const p = params === "" ? [0] : params.split(/[;:]/).map((x) => (x === "" ? 0 : Number(x)));
    const st = { ...this.style };
    for (let k = 0; k < p.length; k++) {
      const n = p[k];
      if (n === 0) { for (const key of Object.keys(st)) delete st[key]; }
      else if (n === 1) st.bold = true; else if (n === 2) st.dim = true;
      else if (n === 3) st.italic = true; else if (n === 4) st.underline = true;
      else if (n === 7) st.inverse = true;
      else if (n === 22) { delete st.bold; delete st.dim; } else if (n === 23) delete st.italic;
      else if (n === 24) delete st.underline; else if (n === 27) delete st.inverse;
      else if (n >= 30 && n <= 37) st.fg = n - 30; else if (n >= 90 && n <= 97) st.fg = n - 82;
      else if (n >= 40 && n <= 47) st.bg = n - 40; else if (n >= 100 && n <= 107) st.bg = n - 92;
      else if (n === 39) delete st.fg; else if (n === 49) delete st.bg;
      else if (n === 38 || n === 48) {
        const key = n === 38 ? "fg" : "bg";
        if (p[k + 1] === 5 && k + 2 < p.length) { st[key] = p[k + 2] & 255; k += 2; }
        else if (p[k + 1] === 2 && k + 4 < p.length) {
          st[key] = `rgb(${p[k + 2] & 255},${p[k + 3] & 255},${p[k + 4] & 255})`; k += 4;
        }
      }
    }
    this.style = st;
  }

  // A line's segments as DOM nodes.
  static render(segments) {
    const frag = document.createDocumentFragment();
    for (const [text, st] of segments) {
      if (!Object.keys(st).length) { frag.append(text); continue; }
      const span = document.createElement("span");
      span.textContent = text;
      const fg = st.inverse ? st.bg : st.fg, bg = st.inverse ? st.fg : st.bg;
      const cls = [];
      if (st.bold) cls.push("b"); if (st.dim) cls.push("d");
      if (st.italic) cls.push("i"); if (st.underline) cls.push("u");
      if (typeof fg === "number") { if (fg < 16) cls.push(`f${fg}`); else span.style.color = AnsiText.xterm(fg); }
      else if (fg) span.style.color = fg;
      if (typeof bg === "number") { if (bg < 16) cls.push(`g${bg}`); else span.style.backgroundColor = AnsiText.xterm(bg); }
      else if (bg) span.style.backgroundColor = bg;
      if (cls.length) span.className = cls.join(" ");
      frag.append(span);
    }
    return frag;
  }

  // Colours 16-255 of the xterm palette: a 6x6x6 cube, then 24 greys.
  static xterm(n) {
    if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
    const c = n - 16, step = (x) => (x ? 55 + x * 40 : 0);
    return `rgb(${step(Math.floor(c / 36))},${step(Math.floor(c / 6) % 6)},${step(c % 6)})`;
  }
}
