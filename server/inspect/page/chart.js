// The state chart: the machine graph (from /inspect/graph.json) laid out by
// elkjs and drawn as SVG. States nest as boxes; the active states are marked
// by outline, fill and a "▶" marker (not by colour alone); the edge of the
// last transition is drawn thick and dashed with its label.
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const CHAR_W = 6.4;
  const LEAF_H = 26;
  const TITLE_H = 22;

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  /** Ids of every active state for a snapshot value (ancestors included), and the leaves. */
  function activeOf(root, value) {
    const all = new Set([root]);
    const leaves = [];
    const walk = (prefix, v) => {
      if (typeof v === 'string') {
        const id = `${prefix}.${v}`;
        all.add(id);
        leaves.push(id);
        return;
      }
      for (const [k, child] of Object.entries(v)) {
        const id = `${prefix}.${k}`;
        all.add(id);
        walk(id, child);
      }
    };
    walk(root, value);
    return { all, leaves };
  }

  /** Edges that explain a move from `before` to `after` under `eventType`: source was active, target is active now. */
  function edgesFor(graph, before, after, eventType) {
    const moved = (e) => before.has(e.source) && after.has(e.target);
    const byEvent = graph.edges.filter((e) => moved(e) && e.event === eventType && (e.source !== e.target || eventType !== ''));
    if (byEvent.length > 0) return byEvent;
    // Eventless hops (always) taken in the same step.
    return graph.edges.filter((e) => e.event === '' && moved(e) && !before.has(e.target));
  }

  /** The ancestors of `s` and `t` that are siblings (or the ids themselves when one contains the other). */
  function lift(s, t) {
    const a = s.split('.');
    const b = t.split('.');
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    if (i === a.length || i === b.length) return [s, t];
    return [a.slice(0, i + 1).join('.'), b.slice(0, i + 1).join('.')];
  }

  async function create(container, graph) {
    const byId = new Map(graph.nodes.map((n) => [n.id, n]));
    const children = new Map();
    for (const n of graph.nodes) {
      if (n.parent === null) continue;
      if (!children.has(n.parent)) children.set(n.parent, []);
      children.get(n.parent).push(n);
    }
    const leafLabel = (n) => n.key;
    const toElk = (n) => {
      const kids = children.get(n.id) || [];
      const node = { id: n.id, labels: [{ text: n.key }] };
      if (kids.length === 0) {
        node.width = Math.max(64, leafLabel(n).length * CHAR_W + 26);
        node.height = LEAF_H;
      } else {
        node.children = kids.map(toElk);
        node.edges = edgesIn.get(n.id) || [];
        node.layoutOptions = {
          'elk.padding': `[top=${TITLE_H + 6},left=10,bottom=10,right=10]`,
          'elk.nodeSize.constraints': 'MINIMUM_SIZE',
          'elk.nodeSize.minimum': `(${n.key.length * CHAR_W + 40}, 40)`,
          // Left to right at every level: the widest but the tidiest of the layouts tried.
          'elk.direction': 'RIGHT',
          'elk.layered.spacing.nodeNodeBetweenLayers': n.parent === null ? '40' : '22',
          'elk.spacing.nodeNode': '14',
          'elk.edgeLabels.inline': 'true',
        };
      }
      return node;
    };
    // One drawn edge per (source, target) after lifting: a transition that leaves
    // its parent is drawn between the boxes that are siblings under the common
    // ancestor (e.g. pausing → paused for pausing.commit.swapIn → paused), which
    // keeps the layout free of lines crossing every box. The edge's tooltip lists
    // the exact transitions it stands for.
    const pairs = new Map();
    const pairOf = new Map();
    for (const e of graph.edges) {
      const [source, target] = lift(e.source, e.target);
      const key = `${source}>${target}`;
      if (!pairs.has(key)) pairs.set(key, { id: `p${pairs.size}`, source, target, edges: [] });
      pairs.get(key).edges.push(e);
      pairOf.set(e, pairs.get(key));
    }
    const pairById = new Map([...pairs.values()].map((p) => [p.id, p]));
    const shown = (p) => p.edges.filter((e) => e.kind === 'event' || e.kind === 'after');
    const elkEdge = (p) => {
      const labels = shown(p);
      const text = [...new Set(labels.map((e) => (e.event.startsWith('xstate.after.') ? e.label.split(' [')[0] : e.event)))].join(', ');
      const edge = { id: p.id, sources: [p.source], targets: [p.target] };
      if (text) edge.labels = [{ text, width: text.length * 5.6 + 4, height: 12 }];
      return edge;
    };
    // Lifted edges join siblings, so each box is laid out on its own with the edges among its children.
    const edgesIn = new Map();
    const nested = (p) => p.source !== p.target && (p.target.startsWith(`${p.source}.`) || p.source.startsWith(`${p.target}.`));
    for (const p of pairs.values()) {
      // A box and its own descendant are joined after layout by a straight line.
      if (nested(p)) continue;
      const home = byId.get(p.source)?.parent ?? graph.root;
      if (!edgesIn.has(home)) edgesIn.set(home, []);
      edgesIn.get(home).push(elkEdge(p));
    }
    const elkGraph = {
      id: '__root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'DOWN',
        'elk.hierarchyHandling': 'SEPARATE_CHILDREN',
        'elk.layered.spacing.nodeNodeBetweenLayers': '26',
        'elk.spacing.nodeNode': '16',
        'elk.spacing.edgeNode': '10',
        'elk.spacing.edgeEdge': '6',
        'elk.edgeLabels.inline': 'true',
        'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
        'elk.json.shapeCoords': 'ROOT',
        'elk.json.edgeCoords': 'ROOT',
      },
      children: [toElk(byId.get(graph.root))],
      edges: [],
    };
    const elk = new ELK();
    const laid = await elk.layout(elkGraph);

    container.textContent = '';
    const svg = el('svg', { role: 'img', 'aria-label': `State chart of ${graph.root}` }, container);
    const defs = el('defs', {}, svg);
    for (const id of ['arrow', 'arrow-last']) {
      const m = el('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: id === 'arrow' ? 7 : 5, markerHeight: id === 'arrow' ? 7 : 5, orient: 'auto-start-reverse' }, defs);
      el('path', { d: 'M0,0 L10,5 L0,10 z' }, m);
    }
    const states = el('g', { class: 'states' }, svg);
    const edgesLayer = el('g', { class: 'edges' }, svg);
    const stateEls = new Map();
    const drawNode = (n) => {
      const info = byId.get(n.id);
      if (info !== undefined) {
        const kind = (children.get(n.id) || []).length > 0 ? info.type : info.type === 'final' ? 'final' : 'atomic';
        const g = el('g', { class: `state ${kind}`, 'data-id': n.id }, states);
        el('rect', { x: n.x, y: n.y, width: n.width, height: n.height, rx: 5 }, g);
        const compound = (children.get(n.id) || []).length > 0;
        const text = el('text', { x: n.x + (compound ? 8 : n.width / 2), y: n.y + (compound ? 15 : n.height / 2 + 4), 'text-anchor': compound ? 'start' : 'middle', class: compound ? 'title' : '' }, g);
        text.textContent = info.key + (info.type === 'parallel' ? ' ∥' : '');
        if (info.initial) el('circle', { class: 'init', cx: n.x + 6, cy: n.y + 6, r: 3 }, g);
        const tip = el('title', {}, g);
        tip.textContent = [info.id, info.description, info.invokes.length ? `invokes: ${info.invokes.join(', ')}` : '', info.internal.length ? `also handles: ${info.internal.join('; ')}` : ''].filter(Boolean).join('\n');
        stateEls.set(n.id, { g, text, key: text.textContent });
      }
      for (const c of n.children || []) drawNode(c);
    };
    drawNode(laid.children[0]);
    const boxes = new Map();
    const collect = (n) => {
      boxes.set(n.id, n);
      for (const c of n.children || []) collect(c);
    };
    collect(laid.children[0]);
    const laidEdges = [];
    const gather = (n) => {
      for (const e of n.edges || []) laidEdges.push(e);
      for (const c of n.children || []) gather(c);
    };
    gather(laid.children[0]);
    for (const p of pairs.values()) {
      if (!nested(p)) continue;
      const a = boxes.get(p.source);
      const b = boxes.get(p.target);
      const inner = p.target.startsWith(`${p.source}.`) ? b : a;
      const outer = inner === b ? a : b;
      // From (or to) the outer box's title bar, straight down to the inner box's top.
      const top = { x: inner.x + inner.width / 2, y: outer.y + 14 };
      const end = { x: inner.x + inner.width / 2, y: inner.y };
      laidEdges.push({ id: p.id, sections: [inner === b ? { startPoint: top, endPoint: end } : { startPoint: end, endPoint: top }] });
    }
    const edgeEls = new Map();
    for (const e of laidEdges) {
      const pair = pairById.get(e.id);
      const kinds = new Set(pair.edges.map((x) => x.kind));
      const kind = kinds.size === 1 ? [...kinds][0] : 'mixed';
      const g = el('g', { class: `edge kind-${kind}`, 'data-source': pair.source, 'data-target': pair.target }, edgesLayer);
      let d = '';
      for (const s of e.sections || []) {
        d += `M${s.startPoint.x},${s.startPoint.y} `;
        for (const b of s.bendPoints || []) d += `L${b.x},${b.y} `;
        d += `L${s.endPoint.x},${s.endPoint.y} `;
      }
      const path = el('path', { d, 'marker-end': 'url(#arrow)' }, g);
      const tip = el('title', {}, g);
      tip.textContent = `${pair.source} → ${pair.target}\n${pair.edges.map((x) => `${x.source.replace(/^[^.]+\./, '')} → ${x.target.replace(/^[^.]+\./, '')}: ${x.label}`).join('\n')}`;
      let label = null;
      const l = (e.labels || [])[0];
      if (l && l.x !== undefined) {
        label = el('text', { x: l.x, y: l.y + 10 }, g);
        label.textContent = l.text;
      }
      edgeEls.set(e.id, { g, path, label, pair });
    }
    const W = laid.width + 20;
    const H = laid.height + 20;
    svg.setAttribute('viewBox', `-10 -10 ${W} ${H}`);
    // Readable labels with some context; "Fit" shows it all.
    let scale = 0.8;
    const applyScale = () => {
      svg.setAttribute('width', String(Math.round(W * scale)));
      svg.setAttribute('height', String(Math.round(H * scale)));
    };
    applyScale();

    /** Brings the current states and the last transition into view, zooming out only when they do not fit. */
    function focus(els) {
      if (els.length === 0) return;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const e of els) {
        const b = e.getBBox();
        x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y);
        x1 = Math.max(x1, b.x + b.width); y1 = Math.max(y1, b.y + b.height);
      }
      const pad = 40;
      const need = Math.min((container.clientWidth - pad) / (x1 - x0 + pad), (container.clientHeight - pad) / (y1 - y0 + pad));
      if (need < scale) {
        scale = Math.max(0.35, need);
        applyScale();
      }
      // viewBox starts at -10,-10.
      const cx = (x0 + x1) / 2 + 10;
      const cy = (y0 + y1) / 2 + 10;
      container.scrollLeft = cx * scale - container.clientWidth / 2;
      container.scrollTop = cy * scale - container.clientHeight / 2;
    }

    let current = null;
    let lastMarked = [];
    return {
      stateIds: () => [...stateEls.keys()],
      zoom(factor) {
        scale = Math.min(3, Math.max(0.2, scale * factor));
        applyScale();
      },
      fit() {
        scale = Math.min(1, container.clientWidth / W, container.clientHeight / H);
        applyScale();
      },
      /** Shows a snapshot; `eventType` is the event that led to it. Returns the active leaves. */
      show(value, eventType) {
        const next = activeOf(graph.root, value);
        for (const { g, text, key } of stateEls.values()) {
          g.classList.remove('active', 'parent-active');
          g.removeAttribute('aria-current');
          text.textContent = key;
        }
        for (const id of next.all) {
          const s = stateEls.get(id);
          if (s === undefined) continue;
          if (next.leaves.includes(id)) {
            s.g.classList.add('active');
            s.g.setAttribute('aria-current', 'step');
            s.text.textContent = `▶ ${s.key}`;
          } else s.g.classList.add('parent-active');
        }
        if (current !== null && eventType !== undefined) {
          const moved = edgesFor(graph, current.all, next.all, eventType);
          if (moved.length > 0) {
            for (const m of lastMarked) {
              m.g.classList.remove('last');
              m.path.setAttribute('marker-end', 'url(#arrow)');
              if (m.label && m.shownText !== undefined) m.label.textContent = m.shownText;
            }
            lastMarked = [];
            for (const x of moved) {
              const em = edgeEls.get(pairOf.get(x).id);
              if (em === undefined || lastMarked.includes(em)) continue;
              em.g.classList.add('last');
              em.path.setAttribute('marker-end', 'url(#arrow-last)');
              edgesLayer.appendChild(em.g);
              lastMarked.push(em);
            }
          }
        }
        current = next;
        focus([...next.leaves.map((id) => stateEls.get(id)?.g), ...lastMarked.map((m) => m.path)].filter(Boolean));
        return next.leaves;
      },
      lastEdges: () => lastMarked.map((m) => `${m.pair.source}>${m.pair.target}`),
    };
  }

  window.StateChart = { create, activeOf };
})();
