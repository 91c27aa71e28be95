// The interactive view of fractal-dsl (see webview.py). Everything from the user's file is
// in the JSON block and shown with textContent; the drawing is parsed as XML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fd-data").textContent);
  var SVGNS = "http://www.w3.org/2000/svg";
  var nodes = data.nodes, edges = data.edges;

  function make(tag, content) {
    var el = document.createElement(tag);
    if (content !== undefined) el.textContent = String(content);
    return el;
  }
  function byId(id) { return document.getElementById(id); }
  function grouped(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }

  document.title = data.title;
  byId("fd-title").textContent = data.title;

  // -- the drawing: render.py's SVG, parsed as XML and scrubbed of anything active ------
  var parsed = new DOMParser().parseFromString(data.svg, "image/svg+xml");
  if (parsed.documentElement.nodeName !== "svg") throw new Error("the embedded drawing is not SVG");
  parsed.querySelectorAll("script, foreignObject, iframe").forEach(function (el) { el.remove(); });
  parsed.querySelectorAll("*").forEach(function (el) {
    Array.prototype.slice.call(el.attributes).forEach(function (a) {
      if (/^on/i.test(a.name) || (/href$/i.test(a.name) && a.value.charAt(0) !== "#")) el.removeAttribute(a.name);
    });
  });
  var svg = document.importNode(parsed.documentElement, true);
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  var canvas = byId("fd-canvas");
  canvas.appendChild(svg);
  var layer = svg.querySelector("g.graph") || svg;

  var nodeEl = nodes.map(function (_, i) { return byId("fd-n" + i); });
  var edgeEl = edges.map(function (_, i) { return byId("fd-e" + i); });
  var into = nodes.map(function () { return []; });  // node -> edges into it
  var out = nodes.map(function () { return []; });   // node -> edges out of it
  edges.forEach(function (e, i) { out[e[0]].push(i); into[e[1]].push(i); });

  // -- details on hover or tap ---------------------------------------------------------
  var details = byId("fd-details");
  var pinned = null;
  function describe(n) {
    if (n.kind === "join") return "join (" + n.op + ") of " + into[nodes.indexOf(n)].length;
    if (n.layers.length) return n.layers.join(" \u2192 ");
    return n.kind;
  }
  function show(i) {
    var n = nodes[i];
    details.replaceChildren();
    details.appendChild(make("h2", n.id));
    var dl = make("dl");
    dl.id = "fd-facts";
    [
      ["layer", describe(n)],
      ["shape in", n["in"] || "\u2014"],
      ["shape out", n.out || "\u2014"],
      ["parameters", grouped(n.params)],
      ["MACs", grouped(n.macs)],
      ["block", n.block === null ? "\u2014" : n.block],
      ["column(s)", n.columns.length ? n.columns.join(", ") : "\u2014"],
      ["depth", n.depth === null ? "\u2014" : n.depth],
      ["dropout", n.dropout.length ? n.dropout.join(", ") : "none"],
      ["module", n.module || "\u2014"],
      ["source", n.line === null ? data.file : data.file + ":" + n.line],
    ].forEach(function (row) {
      var dt = make("dt", row[0]);
      dt.dataset.fact = row[0];
      dl.appendChild(dt);
      dl.appendChild(make("dd", row[1]));
    });
    details.appendChild(dl);
  }
  nodeEl.forEach(function (el, i) {
    if (!el) return;
    el.addEventListener("mouseenter", function () { el.classList.add("fd-hover"); show(i); });
    el.addEventListener("mouseleave", function () {
      el.classList.remove("fd-hover");
      if (pinned !== null) show(pinned);
    });
    el.addEventListener("click", function (ev) { ev.stopPropagation(); pinned = i; show(i); });
  });

  // -- emphasis: a column's path, or what a drop-path sample keeps -----------------------
  var status = byId("fd-status"), note = byId("fd-note");
  function mark(keptNodes, keptEdges, bold) {
    nodeEl.forEach(function (el, i) {
      if (!el) return;
      var on = keptNodes === null || keptNodes.has(i);
      el.classList.toggle("fd-dim", !on);
      el.classList.toggle("fd-on", Boolean(bold) && keptNodes !== null && on);
    });
    edgeEl.forEach(function (el, i) {
      if (!el) return;
      var on = keptEdges === null || keptEdges.has(i);
      el.classList.toggle("fd-dim", !on);
      el.classList.toggle("fd-on", Boolean(bold) && keptEdges !== null && on);
    });
  }
  var columnPick = byId("fd-column");
  data.columns.forEach(function (_, k) {
    var opt = make("option", k + 1);
    opt.value = String(k + 1);
    columnPick.appendChild(opt);
  });
  function showColumn(k) {
    columnPick.value = k ? String(k) : "";
    if (!k) { clear(); return; }
    var c = data.columns[k - 1];
    mark(new Set(c.nodes), new Set(c.edges), true);
    status.textContent = "column " + k + " (the path global drop-path keeps): " + c.layers + " layers, " +
      grouped(c.params) + " parameters, " + grouped(c.macs) + " MACs" + (data.block ? " in block " + data.block : "");
    note.textContent = "";
  }
  columnPick.addEventListener("change", function () { showColumn(Number(columnPick.value) || 0); });
  function clear() {
    mark(null, null, false);
    columnPick.value = "";
    status.textContent = "";
    note.textContent = "";
  }
  byId("fd-clear").addEventListener("click", clear);

  // Liveness as semantics.live: a node is alive when a kept path from it reaches the output.
  function live(kept) {
    var liveNodes = new Set(), liveEdges = new Set();
    for (var v = nodes.length - 1; v >= 0; v--) {
      if (out[v].length && !out[v].some(function (e) { return liveEdges.has(e); })) continue;
      liveNodes.add(v);
      var isJoin = nodes[v].kind === "join";
      into[v].forEach(function (e) {
        if (!isJoin || !(v in kept) || kept[v].indexOf(edges[e][2]) >= 0) liveEdges.add(e);
      });
    }
    return { nodes: liveNodes, edges: liveEdges };
  }

  // A seeded generator (xmur3 hash of the seed's digits, mulberry32): the same
  // distribution as training's, not torch's random stream.
  function generator(seed) {
    var h = 1779033703 ^ seed.length;
    for (var i = 0; i < seed.length; i++) {
      h = Math.imul(h ^ seed.charCodeAt(i), 3432918353);
      h = (h << 13) | (h >>> 19);
    }
    var a = h >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      var t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  // The training rule (the compiled module's _sample_masks): with probability `global`
  // one column chosen uniformly keeps only its path; otherwise each join input is dropped
  // with probability `local`, and a join that would lose them all keeps the one that
  // came closest to surviving.
  function sample(seed) {
    var dp = data.droppath, rand = generator(String(seed));
    var isGlobal = rand() < dp.global;
    var column = Math.min(Math.floor(rand() * data.columns.length), data.columns.length - 1) + 1;
    var kept = {};
    nodes.forEach(function (n, j) {
      if (n.kind !== "join" || n.context) return;
      var u = into[j].map(function () { return rand(); });
      var keep = [], best = 0;
      u.forEach(function (x, i) { if (x >= dp.local) keep.push(edges[into[j][i]][2]); if (x > u[best]) best = i; });
      if (!keep.length) keep.push(edges[into[j][best]][2]);
      kept[j] = isGlobal ? n.kept[column - 1] : keep;
    });
    return { mode: isGlobal ? "global" : "local", column: isGlobal ? column : null, kept: kept };
  }
  function showSample(seed) {
    var s = sample(seed), alive = live(s.kept);
    mark(alive.nodes, alive.edges, false);
    columnPick.value = "";
    var joins = Object.keys(s.kept), total = 0, kept = 0;
    joins.forEach(function (j) { total += into[j].length; kept += s.kept[j].length; });
    status.textContent = "drop-path sample, seed " + seed + ": " +
      (s.mode === "global" ? "global, column " + s.column : "local, " + kept + " of " + total + " join inputs kept") +
      "; " + alive.nodes.size + " of " + nodes.length + " nodes used" +
      (data.droppath.per === "sample" ? " (drop-path is drawn per example: this is one example's)" : "");
    note.textContent = data.sameDistribution;
    return s;
  }
  var seedField = byId("fd-seed");
  if (data.droppath.enabled) {
    byId("fd-sample").addEventListener("click", function () {
      var seed = Math.max(0, Math.floor(Number(seedField.value) || 0));
      showSample(seed);
      seedField.value = String(seed + 1);
    });
  } else {
    byId("fd-sampler").replaceChildren(make("span", "drop-path off"));
  }

  // -- blocks collapse and expand ---------------------------------------------------------
  var blockBar = byId("fd-blocks"), boxes = {}, buttons = {};
  function inBlock(b) {
    var set = new Set();
    nodes.forEach(function (n, i) { if (n.block === b && n.kind !== "pool" && !n.context) set.add(i); });
    return set;
  }
  function box(b, members) {
    var cluster = byId("fd-b" + b);
    if (!cluster) return null;
    var bb = cluster.getBBox();
    var g = document.createElementNS(SVGNS, "g");
    g.setAttribute("class", "fd-box");
    g.id = "fd-box" + b;
    var rect = document.createElementNS(SVGNS, "rect");
    [["x", bb.x], ["y", bb.y], ["width", bb.width], ["height", bb.height], ["rx", 8]].forEach(function (a) {
      rect.setAttribute(a[0], String(a[1]));
    });
    g.appendChild(rect);
    var layers = 0, joins = 0, params = 0, macs = 0;
    members.forEach(function (i) {
      var n = nodes[i];
      if (n.kind === "layer") layers++;
      if (n.kind === "join") joins++;
      params += n.params;
      macs += n.macs;
    });
    ["block " + b + " (collapsed): " + layers + " layers, " + joins + " joins",
     grouped(params) + " parameters, " + grouped(macs) + " MACs", "click to expand"].forEach(function (line, k) {
      var t = document.createElementNS(SVGNS, "text");
      t.setAttribute("x", String(bb.x + 12));
      t.setAttribute("y", String(bb.y + 26 + 20 * k));
      t.textContent = line;
      g.appendChild(t);
    });
    g.addEventListener("click", function (ev) { ev.stopPropagation(); setCollapsed(b, false); });
    layer.appendChild(g);
    return g;
  }
  function setCollapsed(b, on) {
    var members = inBlock(b);
    members.forEach(function (i) { if (nodeEl[i]) nodeEl[i].classList.toggle("fd-hidden", on); });
    edges.forEach(function (e, i) {
      if (edgeEl[i] && members.has(e[0]) && members.has(e[1])) edgeEl[i].classList.toggle("fd-hidden", on);
    });
    if (on && !boxes[b]) boxes[b] = box(b, members);
    if (boxes[b]) boxes[b].classList.toggle("fd-hidden", !on);
    buttons[b].classList.toggle("fd-collapsed", on);
    buttons[b].setAttribute("aria-pressed", on ? "true" : "false");
  }
  data.blocks.forEach(function (b) {
    var button = make("button", "block " + b);
    button.type = "button";
    button.id = "fd-block" + b;
    button.title = "collapse or expand block " + b;
    button.addEventListener("click", function () { setCollapsed(b, !button.classList.contains("fd-collapsed")); });
    buttons[b] = button;
    blockBar.appendChild(button);
  });
  byId("fd-collapse-all").addEventListener("click", function () { data.blocks.forEach(function (b) { setCollapsed(b, true); }); });
  byId("fd-expand-all").addEventListener("click", function () { data.blocks.forEach(function (b) { setCollapsed(b, false); }); });

  // -- zoom and pan: the SVG's viewBox ------------------------------------------------------
  var base = svg.viewBox.baseVal;
  var home = { x: base.x, y: base.y, w: base.width, h: base.height };
  var vb = { x: home.x, y: home.y, w: home.w, h: home.h };
  function apply() { svg.setAttribute("viewBox", [vb.x, vb.y, vb.w, vb.h].join(" ")); }
  function zoom(factor, cx, cy) {
    if (cx === undefined) { cx = vb.x + vb.w / 2; cy = vb.y + vb.h / 2; }
    vb.x = cx - (cx - vb.x) * factor;
    vb.y = cy - (cy - vb.y) * factor;
    vb.w *= factor;
    vb.h *= factor;
    apply();
  }
  function fit() { vb = { x: home.x, y: home.y, w: home.w, h: home.h }; apply(); }
  // A tall network opens at its top, as wide as the window allows (at most 1.5 pixels a point).
  function opening() {
    var rect = canvas.getBoundingClientRect();
    if (!rect.width || !rect.height) return;
    var aspect = rect.height / rect.width;
    if (home.h / home.w <= 1.5 * aspect) return;
    var w = Math.max(home.w, rect.width / 1.5);
    vb = { x: home.x + home.w / 2 - w / 2, y: home.y, w: w, h: w * aspect };
    apply();
  }
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse());
    zoom(ev.deltaY < 0 ? 1 / 1.2 : 1.2, p.x, p.y);
  }, { passive: false });
  var drag = null;
  canvas.addEventListener("pointerdown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, vx: vb.x, vy: vb.y, moved: false };
  });
  canvas.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!drag.moved) { drag.moved = true; canvas.setPointerCapture(ev.pointerId); canvas.classList.add("fd-dragging"); }
    var rect = canvas.getBoundingClientRect();
    var scale = Math.max(vb.w / rect.width, vb.h / rect.height);
    vb.x = drag.vx - dx * scale;
    vb.y = drag.vy - dy * scale;
    apply();
  });
  function endDrag() { drag = null; canvas.classList.remove("fd-dragging"); }
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  byId("fd-zoom-in").addEventListener("click", function () { zoom(1 / 1.25); });
  byId("fd-zoom-out").addEventListener("click", function () { zoom(1.25); });
  byId("fd-fit").addEventListener("click", fit);

  // -- the view the page was written with ----------------------------------------------------
  if (data.initial.collapsed) data.blocks.forEach(function (b) { setCollapsed(b, true); });
  if (data.initial.kept) {
    mark(new Set(data.initial.kept), new Set(data.initial.keptEdges), data.initial.bold);
    status.textContent = data.initial.note;
  }

  opening();
  window.fractalView = {
    data: data, live: live, sample: sample, showSample: showSample, showColumn: showColumn,
    setCollapsed: setCollapsed, zoom: zoom, fit: fit, clear: clear,
  };
})();
