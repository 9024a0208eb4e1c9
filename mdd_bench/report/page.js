// report.html: the track switch, sortable columns and the provenance panel. No dependencies.
"use strict";
(() => {
  const sources = JSON.parse(document.getElementById("mdd-sources").textContent);

  // Track switch: every element of another track is hidden; shared tables carry no data-track.
  const showTrack = (track) => {
    for (const el of document.querySelectorAll("[data-track]")) el.hidden = el.dataset.track !== track;
    for (const input of document.querySelectorAll("input[name=track]")) input.checked = input.value === track;
  };
  for (const input of document.querySelectorAll("input[name=track]")) {
    input.addEventListener("change", () => showTrack(input.value));
  }
  showTrack(document.body.dataset.initialTrack);

  // Sorting: each click on a header cycles first order -> reversed -> as printed. Rows move only within
  // their <tbody> (a budget block), and a missing number always sorts last. Numbers sort best first:
  // largest, or smallest in a column marked data-better="lower" (HLR).
  const byColumn = (col, numeric, dir) => (a, b) => {
    const x = a.cells[col], y = b.cells[col];
    if (numeric) {
      const vx = x.dataset.v, vy = y.dataset.v;
      if (vx === undefined || vy === undefined) return (vx === undefined) - (vy === undefined);
      return dir * (Number(vx) - Number(vy));
    }
    return dir * x.textContent.localeCompare(y.textContent);
  };
  for (const th of document.querySelectorAll("th[data-col]")) {
    th.addEventListener("click", () => {
      const table = th.closest("table");
      const state = (Number(th.dataset.state || 0) + 1) % 3;
      for (const other of table.querySelectorAll("th[data-col]")) {
        other.dataset.state = "0";
        other.removeAttribute("aria-sort");
      }
      th.dataset.state = String(state);
      const numeric = th.classList.contains("num");
      const first = numeric && th.dataset.better !== "lower" ? -1 : 1; // largest first; labels: A to Z
      const dir = state === 1 ? first : -first;
      const order = state === 0
        ? (a, b) => Number(a.dataset.i) - Number(b.dataset.i)
        : byColumn(Number(th.dataset.col), numeric, dir);
      for (const body of table.tBodies) body.append(...Array.from(body.rows).sort(order));
      if (state) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    });
  }

  // Provenance: a click (or Enter) on a number lists its result files with protocol, seeds, versions.
  const panel = document.getElementById("provenance");
  const content = panel.querySelector(".content");
  const el = (tag, text, attrs = {}) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const row = (dl, term, value) => {
    if (value === "" || value === undefined) return;
    dl.append(el("dt", term), el("dd", value));
  };
  const show = (td) => {
    content.replaceChildren(el("h3", td.dataset.where));
    const list = el("ol");
    for (const id of td.dataset.src.split(" ")) {
      const s = sources[Number(id)];
      const item = el("li");
      item.append(el("a", s.file, { href: s.href }));
      const dl = el("dl");
      row(dl, "protocol", `${s.protocol} (hash ${s.protocol_hash})`);
      row(dl, "cell", `${s.method}, ${s.dataset}, ${s.budget} pairs${s.ablation ? ", ablation " + s.ablation : ""}`);
      row(dl, "seeds", `distillation ${s.seed}; evaluation ` +
        Object.entries(s.eval_seeds).map(([t, seeds]) => `${t}: ${seeds.join(", ") || "?"}`).join("; "));
      row(dl, "versions", Object.entries(s.versions).map(([k, v]) => `${k} ${v}`).join(" · "));
      row(dl, "created", s.created);
      item.append(dl);
      list.append(item);
    }
    content.append(list);
    panel.hidden = false;
  };
  document.addEventListener("click", (event) => {
    const td = event.target.closest("td[data-src]");
    if (td) show(td);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") panel.hidden = true;
    const td = event.target.closest && event.target.closest("td[data-src]");
    if (td && event.key === "Enter") show(td);
  });
  panel.querySelector(".close").addEventListener("click", () => { panel.hidden = true; });
})();
