"""The case view's style and script, kept as constants so the page's CSP can pin their hashes.

The script reads only the JSON data block, builds the page with DOM calls and ``textContent``
(never ``innerHTML``), and requests nothing from the network.
"""

PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 18px 0 4px; }
.meta, .none { color: #666; } canvas { display: block; border: 1px solid #ddd; cursor: grab; }
#details { margin-top: 14px; display: grid; grid-template-columns: 480px auto; gap: 16px; align-items: start; }
#details img, #details video { width: 480px; } dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 0; }
dt { color: #666; } dd { margin: 0; font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.legend span { display: inline-block; margin-right: 12px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""

PAGE_SCRIPT = r"""
(() => {
  const began = performance.now();
  const data = JSON.parse(document.getElementById('case-data').textContent);
  const COLOURS = {lying: '#d62728', hands_raised: '#ff7f0e', arms_behind_back: '#9467bd',
                   kneeling_or_crouching: '#8c564b', suspended: '#e377c2'};
  const REVIEWED = {confirmed: '#2ca02c', rejected: '#555555', uncertain: '#bcbd22'};
  const LANE = 36, LABEL = 230, AXIS = 26, PAD = 12;
  const root = document.getElementById('timeline');
  const details = document.getElementById('details');
  const el = (tag, text, parent) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (parent) parent.appendChild(e); return e; };
  const hms = s => { s = Math.max(0, s); const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = Math.floor(s % 60);
                     return [h, m, x].map(v => String(v).padStart(2, '0')).join(':'); };
  const legend = el('p', undefined, root); legend.className = 'legend';
  for (const [name, colour] of Object.entries(COLOURS)) { const s = el('span', name, legend); const i = document.createElement('i'); i.style.background = colour; s.prepend(i); }
  const groups = [
    {title: 'Wall clock (UTC)', wall: true, lanes: data.lanes.filter(l => l.start !== null)},
    {title: 'Start unknown: not placed on the wall clock; each on its own axis, time from its first frame', wall: false,
     lanes: data.lanes.filter(l => l.start === null)}];
  for (const group of groups) if (group.lanes.length) timeline(group);
  // case.html#event=<recording id>/<event number> opens that event (links from reports, tests).
  const wanted = decodeURIComponent(location.hash).match(/^#event=(.+)\/(\d+)$/);
  if (wanted) for (const group of groups) for (const lane of group.lanes) if (lane.id === wanted[1])
    for (const e of lane.events) if (e[0] === Number(wanted[2])) show(lane, e, group.wall);
  window.vigilCase = {lanes: data.lanes.length, events: data.lanes.reduce((n, l) => n + l.events.length, 0)};
  document.body.dataset.renderMs = Math.round(performance.now() - began);
  document.title = 'ready: ' + document.title;

  function timeline(group) {
    el('h2', group.title, root);
    const canvas = el('canvas', undefined, root);
    const width = Math.max(900, Math.min(1800, (root.clientWidth || 1200)));
    canvas.width = width; canvas.height = AXIS + group.lanes.length * LANE;
    const ctx = canvas.getContext('2d');
    const origin = l => group.wall ? l.start / 1000 : 0;
    let t0 = Infinity, t1 = -Infinity;
    for (const l of group.lanes) { t0 = Math.min(t0, origin(l)); t1 = Math.max(t1, origin(l) + l.duration); }
    if (!(t1 > t0)) t1 = t0 + 1;
    const full = [t0, t1]; let view = [t0, t1];
    const x = t => LABEL + (t - view[0]) / (view[1] - view[0]) * (width - LABEL - PAD);
    const hatch = (() => { const p = document.createElement('canvas'); p.width = p.height = 8; const c = p.getContext('2d');
      c.strokeStyle = '#b0b0b0'; c.beginPath(); c.moveTo(0, 8); c.lineTo(8, 0); c.stroke(); return ctx.createPattern(p, 'repeat'); })();
    let hits = [];
    function draw() {
      ctx.clearRect(0, 0, width, canvas.height); hits = [];
      ctx.font = '11px system-ui'; ctx.fillStyle = '#666'; ctx.textBaseline = 'middle';
      const span = view[1] - view[0], steps = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400];
      const step = steps.find(s => span / s <= 10) || 86400;
      for (let t = Math.ceil(view[0] / step) * step; t <= view[1]; t += step) {
        const px = x(t); ctx.fillRect(px, AXIS - 6, 1, 6);
        ctx.fillText(group.wall ? new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) : hms(t), px + 2, 8);
      }
      group.lanes.forEach((lane, i) => {
        const y = AXIS + i * LANE, o = origin(lane);
        ctx.fillStyle = i % 2 ? '#fafafa' : '#f2f2f2'; ctx.fillRect(LABEL, y, width - LABEL - PAD, LANE - 2);
        ctx.fillStyle = '#222'; ctx.fillText(lane.camera.slice(0, 34), 4, y + 10);
        ctx.fillStyle = '#888'; ctx.fillText(lane.id.slice(0, 34), 4, y + 24);
        const visible = (a, b) => o + b >= view[0] && o + a <= view[1];
        ctx.save(); ctx.beginPath(); ctx.rect(LABEL, y, width - LABEL - PAD, LANE - 2); ctx.clip();
        ctx.fillStyle = hatch;
        for (const [a, b] of lane.gaps) if (visible(a, b)) ctx.fillRect(x(o + a), y, Math.max(1, x(o + b) - x(o + a)), LANE - 2);
        for (const [a, b, n] of lane.presence) if (visible(a, b)) {
          ctx.fillStyle = `rgba(31, 119, 180, ${Math.min(0.9, 0.25 + 0.15 * n)})`;
          ctx.fillRect(x(o + a), y + 4, Math.max(1, x(o + b) - x(o + a)), 12);
        }
        for (const e of lane.events) { const [, posture, , a, b, , review] = e; if (!visible(a, b)) continue;
          const left = x(o + a), w = Math.max(4, x(o + b) - left);
          ctx.fillStyle = COLOURS[posture] || '#000'; ctx.fillRect(left, y + 19, w, 12);
          if (review) { ctx.strokeStyle = REVIEWED[review]; ctx.lineWidth = 2; ctx.strokeRect(left - 1, y + 18, w + 2, 14); }
          hits.push([left - 2, y + 17, w + 4, 16, lane, e]);
        }
        ctx.restore();
      });
    }
    draw();
    let drag = null;
    canvas.addEventListener('wheel', ev => { ev.preventDefault();
      const at = view[0] + (ev.offsetX - LABEL) / (width - LABEL - PAD) * (view[1] - view[0]);
      const k = ev.deltaY > 0 ? 1.25 : 0.8, lo = at - (at - view[0]) * k, hi = at + (view[1] - at) * k;
      view = [Math.max(full[0], lo), Math.min(full[1], Math.max(hi, lo + 1))]; draw(); });
    canvas.addEventListener('mousedown', ev => { drag = [ev.offsetX, view.slice()]; });
    window.addEventListener('mouseup', () => { drag = null; });
    canvas.addEventListener('mousemove', ev => { if (!drag || Math.abs(ev.offsetX - drag[0]) < 3) return;
      const dt = (drag[0] - ev.offsetX) / (width - LABEL - PAD) * (drag[1][1] - drag[1][0]);
      view = [drag[1][0] + dt, drag[1][1] + dt]; draw(); });
    canvas.addEventListener('click', ev => {
      const hit = hits.find(([hx, hy, hw, hh]) => ev.offsetX >= hx && ev.offsetX <= hx + hw && ev.offsetY >= hy && ev.offsetY <= hy + hh);
      if (hit) show(hit[4], hit[5], group.wall);
    });
  }

  function show(lane, e, wall) {
    const [number, posture, track, a, b, score, review, clip] = e;
    details.replaceChildren();
    const media = el('div', undefined, details);
    const picture = data.pictures[lane.id + '/' + number];
    if (picture) { const img = el('img', undefined, media); img.alt = posture; img.src = picture; }
    else el('p', 'No picture inlined for this event (see the recording\'s report).', media).className = 'none';
    if (clip && data.clipBase !== null) { const v = el('video', undefined, media); v.controls = true; v.src = data.clipBase + '/' + clip[0]; }
    const facts = el('dl', undefined, details);
    const fact = (k, v) => { el('dt', k, facts); el('dd', String(v), facts); };
    fact('recording', lane.id); fact('camera', lane.camera); fact('event', number); fact('posture', posture);
    fact('track', track); fact('from', hms(a) + (wall ? '  (' + new Date(lane.start + a * 1000).toISOString() + ')' : ''));
    fact('to', hms(b)); fact('score', score); fact('review', review || 'not reviewed');
    fact('clip', clip ? clip[0] + '  sha256 ' + clip[1] : 'none yet: vigil clip OUT ' + lane.id + ' --from ' + hms(a) + ' --to ' + hms(b));
    if (data.reviewUrl) {
      const link = el('a', 'Record a review decision on this event', facts.parentNode); link.id = 'review-link';
      link.href = data.reviewUrl + '?' + new URLSearchParams({recording: lane.id, event: number});
    }
    const looksLike = (data.similar || {})[lane.id + '/' + track];
    if (looksLike) {
      const button = el('button', 'Find this person', facts.parentNode); button.id = 'find-person';
      button.addEventListener('click', () => {
        const list = el('ol', undefined, facts.parentNode); list.id = 'similar';
        el('p', 'Tracks that look most alike (whole-body appearance, never faces): a lead to check by eye, not an identification.', facts.parentNode).className = 'none';
        for (const [rid, tid, sim, first] of looksLike) el('li', rid + '  track ' + tid + '  from ' + hms(first) + '  similarity ' + sim, list);
        button.disabled = true;
      });
    }
  }
})();
"""
