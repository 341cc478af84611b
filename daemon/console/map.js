// The fleet map: zones, ground lost to failures (apart from ground lost to maintenance and
// from design gaps), and every siren by state, drawn on one canvas in Web Mercator so that an
// office's own tiles can go underneath. A state is a shape as well as a colour, so that no one
// needs to tell colours apart to read it.

const TILE = 256;

// Colours from the Okabe-Ito palette (distinguishable with the common colour-vision
// deficiencies); the shape says the same as the colour.
export const STATE_STYLE = {
  ok: { colour: '#009E73', shape: 'circle' },
  degraded: { colour: '#E69F00', shape: 'triangle' },
  faulty: { colour: '#D55E00', shape: 'square' },
  down: { colour: '#B00020', shape: 'cross' },
  unreachable: { colour: '#7B3294', shape: 'diamond' },
  unknown: { colour: '#6B6B6B', shape: 'ring' },
};

export const GROUND_STYLE = {
  lost: { fill: 'rgba(213, 94, 0, 0.40)', stroke: '#D55E00', hatch: true },
  lost_in_maintenance: { fill: 'rgba(0, 114, 178, 0.30)', stroke: '#0072B2', hatch: false },
  design_gap: { fill: 'rgba(120, 120, 120, 0.22)', stroke: '#8a8a8a', hatch: false },
};

function project(lon, lat) {
  const x = ((lon + 180) / 360) * TILE;
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  const y = (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * TILE;
  return [x, y];
}

// Adds `shape` of `size` (radius, px) at (x, y) to the path being built on `ctx`: the sirens
// of one state are one path, filled and outlined once (ten thousand shapes, two draws).
function addShape(ctx, shape, x, y, size) {
  switch (shape) {
    case 'triangle':
      ctx.moveTo(x, y - size * 1.15);
      ctx.lineTo(x + size * 1.05, y + size * 0.75);
      ctx.lineTo(x - size * 1.05, y + size * 0.75);
      ctx.closePath();
      break;
    case 'square':
      ctx.rect(x - size * 0.85, y - size * 0.85, size * 1.7, size * 1.7);
      break;
    case 'diamond':
      ctx.moveTo(x, y - size * 1.2);
      ctx.lineTo(x + size * 1.2, y);
      ctx.lineTo(x, y + size * 1.2);
      ctx.lineTo(x - size * 1.2, y);
      ctx.closePath();
      break;
    case 'cross': {
      const a = size * 1.05;
      const w = size * 0.42;
      ctx.moveTo(x - a, y - a + w);
      ctx.lineTo(x - a + w, y - a);
      ctx.lineTo(x, y - w);
      ctx.lineTo(x + a - w, y - a);
      ctx.lineTo(x + a, y - a + w);
      ctx.lineTo(x + w, y);
      ctx.lineTo(x + a, y + a - w);
      ctx.lineTo(x + a - w, y + a);
      ctx.lineTo(x, y + w);
      ctx.lineTo(x - a + w, y + a);
      ctx.lineTo(x - a, y + a - w);
      ctx.lineTo(x - w, y);
      ctx.closePath();
      break;
    }
    case 'ring':
      ctx.moveTo(x + size * 0.8, y);
      ctx.arc(x, y, size * 0.8, 0, Math.PI * 2);
      break;
    default:
      ctx.moveTo(x + size, y);
      ctx.arc(x, y, size, 0, Math.PI * 2);
  }
}

// Fills and outlines the path built of `shape`s: a filled shape in `colour` outlined in
// white; the hollow ring (nothing known yet) white, outlined in `colour`.
function paintShapes(ctx, shape, size, colour) {
  const hollow = shape === 'ring';
  ctx.fillStyle = hollow ? '#ffffff' : colour;
  ctx.strokeStyle = hollow ? colour : '#ffffff';
  ctx.lineWidth = hollow ? Math.max(1.5, size / 2.5) : Math.max(1, size / 4);
  if (hollow) {
    ctx.fill();
    ctx.stroke();
  } else {
    ctx.stroke();
    ctx.fill();
  }
}

// Draws one `shape` of `size` at (x, y).
export function drawShape(ctx, shape, x, y, size, colour) {
  ctx.beginPath();
  addShape(ctx, shape, x, y, size);
  paintShapes(ctx, shape, size, colour);
}

// The shapes as characters, for lists and legends: cheap to draw in their hundreds.
const GLYPH = { circle: '●', triangle: '▲', square: '■', cross: '✖', diamond: '◆', ring: '○' };

// A state's icon for text: its shape in its colour (what it means is written beside it).
export function stateIcon(state) {
  const style = STATE_STYLE[state] || STATE_STYLE.unknown;
  const icon = document.createElement('span');
  icon.className = 'state-icon';
  icon.setAttribute('aria-hidden', 'true');
  icon.style.color = style.colour;
  icon.textContent = GLYPH[style.shape];
  return icon;
}

export class FleetMap {
  constructor(canvas, { basemap, onPick, label }) {
    this.canvas = canvas;
    this.basemap = basemap;
    this.onPick = onPick;
    this.label = label;
    this.sirens = [];
    this.zones = [];
    this.ground = [];
    this.tiles = new Map();
    this.view = null; // { cx, cy, scale }: world centre and pixels per world unit
    this.frame = 0;
    this.hatch = null;
    this.attach();
    // The canvas's size as layout last gave it: read here, never while drawing, where asking
    // for it would make the browser lay the whole page out again.
    this.size = { w: 0, h: 0 };
    new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      this.size = { w: box.width, h: box.height };
      // Until a person moves the map, it shows the whole fleet at whatever size it has.
      if (!this.moved) this.view = null;
      this.redraw();
    }).observe(canvas);
  }

  attach() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('pointerdown', (e) => {
      drag = { x: e.clientX, y: e.clientY, moved: false };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener('pointermove', (e) => {
      if (!drag || !this.view) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (!drag.moved) return;
      this.moved = true;
      this.view.cx -= dx / this.view.scale;
      this.view.cy -= dy / this.view.scale;
      drag.x = e.clientX;
      drag.y = e.clientY;
      this.redraw();
    });
    c.addEventListener('pointerup', (e) => {
      const was = drag;
      drag = null;
      if (was && !was.moved) {
        const hit = this.pick(e.offsetX, e.offsetY);
        if (hit && this.onPick) this.onPick(hit);
      }
    });
    c.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        this.zoomAt(e.offsetX, e.offsetY, e.deltaY < 0 ? 1.25 : 0.8);
      },
      { passive: false },
    );
    c.addEventListener('keydown', (e) => {
      if (!this.view) return;
      const step = 60 / this.view.scale;
      const keys = {
        ArrowLeft: () => (this.view.cx -= step),
        ArrowRight: () => (this.view.cx += step),
        ArrowUp: () => (this.view.cy -= step),
        ArrowDown: () => (this.view.cy += step),
        '+': () => this.zoomAt(c.clientWidth / 2, c.clientHeight / 2, 1.25),
        '=': () => this.zoomAt(c.clientWidth / 2, c.clientHeight / 2, 1.25),
        '-': () => this.zoomAt(c.clientWidth / 2, c.clientHeight / 2, 0.8),
        0: () => {
          this.moved = false;
          this.fit();
        },
      };
      if (keys[e.key]) {
        e.preventDefault();
        keys[e.key]();
        this.redraw();
      }
    });
  }

  zoomAt(px, py, factor) {
    if (!this.view) return;
    this.moved = true;
    const [wx, wy] = this.toWorld(px, py);
    this.view.scale = Math.min(2 ** 20, Math.max(0.5, this.view.scale * factor));
    const [nx, ny] = this.toWorld(px, py);
    this.view.cx += wx - nx;
    this.view.cy += wy - ny;
    this.redraw();
  }

  toWorld(px, py) {
    const v = this.view;
    return [v.cx + (px - this.size.w / 2) / v.scale, v.cy + (py - this.size.h / 2) / v.scale];
  }

  toScreen(wx, wy) {
    const v = this.view;
    return [(wx - v.cx) * v.scale + this.size.w / 2, (wy - v.cy) * v.scale + this.size.h / 2];
  }

  // sirens: the console's own siren records ({ id, state, maintenance, longitude, latitude }),
  // kept by reference, so that a change of state needs only a redraw; zones and ground:
  // GeoJSON features.
  setData({ sirens, zones, ground }) {
    if (sirens) this.sirens = sirens.map((s) => ({ s, world: project(s.longitude, s.latitude) }));
    this.drawn = null;
    if (zones) this.zones = zones.map((f) => this.prepare(f));
    if (ground) this.ground = ground.map((f) => this.prepare(f));
    if (zones || ground) this.version = (this.version || 0) + 1;
    if (!this.view) this.fit();
    this.redraw();
  }

  prepare(feature) {
    const g = feature.geometry || {};
    const polygons = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : [];
    const rings = polygons.map((poly) => poly.map((ring) => ring.map(([lon, lat]) => project(lon, lat))));
    let sx = 0;
    let sy = 0;
    let n = 0;
    let best = 0;
    for (const poly of rings) {
      const outer = poly[0] || [];
      if (outer.length > best) {
        best = outer.length;
        sx = 0;
        sy = 0;
        n = 0;
        for (const [x, y] of outer) {
          sx += x;
          sy += y;
          n += 1;
        }
      }
    }
    return { properties: feature.properties || {}, rings, centre: n ? [sx / n, sy / n] : null };
  }

  fit() {
    const pts = [];
    for (const m of this.sirens) pts.push(m.world);
    for (const z of this.zones) for (const poly of z.rings) for (const p of poly[0] || []) pts.push(p);
    const w = this.size.w || this.canvas.clientWidth || 600;
    const h = this.size.h || this.canvas.clientHeight || 400;
    if (!pts.length) {
      this.view = { cx: TILE / 2, cy: TILE / 2, scale: 1 };
      return;
    }
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const [x, y] of pts) {
      x0 = Math.min(x0, x);
      y0 = Math.min(y0, y);
      x1 = Math.max(x1, x);
      y1 = Math.max(y1, y);
    }
    const span = Math.max((x1 - x0) / w, (y1 - y0) / h, 1e-9);
    this.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: 0.9 / span };
  }

  redraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const { w, h } = this.size;
    if (!w || !h) return;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    if (!this.view) this.fit();
    const baseKey = this.baseKey;
    const base = this.baseLayer(w, h, ratio);
    const ctx = c.getContext('2d');
    const dirty = this.dirty;
    this.dirty = new Set();
    if (baseKey === this.baseKey && this.drawn && dirty.size && dirty.size <= 400) {
      this.drawAround(ctx, dirty, ratio);
      return;
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(base, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.drawn = this.drawSirens(ctx, this.sirens, w, h);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.labels, 0, 0);
  }

  // Everything drawn again (a siren's maintenance ring, say, which reaches further).
  full() {
    this.drawn = null;
    this.redraw();
  }

  // Sirens whose state changed (their ids), redrawn without the rest: a full map of ten
  // thousand sirens takes the browser tens of milliseconds to paint, a few changes do not.
  touch(ids) {
    if (!this.dirty) this.dirty = new Set();
    for (const id of ids) this.dirty.add(id);
    this.redraw();
  }

  // Redraws the ground under each changed siren (from the base layer), then every siren
  // within reach of it, then the zones' names, all clipped to those squares.
  drawAround(ctx, ids, ratio) {
    const d = this.drawn;
    const reach = d.size * 2.2 + 3;
    const squares = [];
    for (const id of ids) {
      const at = d.at.get(id);
      if (at) squares.push([at[0] - reach, at[1] - reach]);
    }
    if (!squares.length) return;
    const side = reach * 2;
    ctx.save();
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.beginPath();
    for (const [x, y] of squares) ctx.rect(x, y, side, side);
    ctx.clip();
    // Copies each square of `layer` (device pixels) onto the map.
    const copy = (layer) => {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      const pw = Math.ceil(side * ratio) + 2;
      for (const [x, y] of squares) {
        const px = Math.max(0, Math.floor(x * ratio));
        const py = Math.max(0, Math.floor(y * ratio));
        ctx.drawImage(layer, px, py, pw, pw, px, py, pw, pw);
      }
    };
    copy(this.base);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const near = new Set();
    for (const [x, y] of squares) {
      for (let gx = Math.floor((x - reach) / d.cell); gx <= Math.floor((x + side + reach) / d.cell); gx++) {
        for (let gy = Math.floor((y - reach) / d.cell); gy <= Math.floor((y + side + reach) / d.cell); gy++) {
          for (const m of d.grid.get(`${gx},${gy}`) || []) near.add(m);
        }
      }
    }
    this.drawSirens(ctx, [...near], this.size.w, this.size.h);
    copy(this.labels);
    ctx.restore();
  }

  // Tiles, ground and zone lines change only when the view or the coverage does, and hold
  // most of the map's vertices: drawn once into a layer of their own, not at every change
  // of a siren's state.
  baseLayer(w, h, ratio) {
    const v = this.view;
    const key = [v.cx, v.cy, v.scale, w, h, ratio, this.version, this.tilesLoaded].join();
    if (this.base && this.baseKey === key) return this.base;
    this.base = this.base || document.createElement('canvas');
    this.base.width = Math.round(w * ratio);
    this.base.height = Math.round(h * ratio);
    const ctx = this.base.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = '#f4f1ea';
    ctx.fillRect(0, 0, w, h);
    if (this.basemap) this.drawTiles(ctx, w, h);
    for (const g of this.ground) this.drawGround(ctx, g);
    ctx.lineJoin = 'round';
    for (const z of this.zones) this.drawZone(ctx, z);
    // The zones' names go over the sirens: a layer of their own, drawn with this one.
    this.labels = this.labels || document.createElement('canvas');
    this.labels.width = this.base.width;
    this.labels.height = this.base.height;
    const labels = this.labels.getContext('2d');
    labels.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.drawZoneNames(labels);
    this.baseKey = key;
    return this.base;
  }

  path(ctx, rings) {
    ctx.beginPath();
    for (const poly of rings) {
      for (const ring of poly) {
        ring.forEach(([x, y], i) => {
          const [sx, sy] = this.toScreen(x, y);
          if (i === 0) ctx.moveTo(sx, sy);
          else ctx.lineTo(sx, sy);
        });
        ctx.closePath();
      }
    }
  }

  drawGround(ctx, g) {
    const style = GROUND_STYLE[g.properties.kind] || GROUND_STYLE.design_gap;
    this.path(ctx, g.rings);
    ctx.fillStyle = style.fill;
    ctx.fill('evenodd');
    if (style.hatch) {
      ctx.save();
      ctx.clip('evenodd');
      ctx.fillStyle = this.hatchPattern(ctx);
      ctx.fillRect(0, 0, this.size.w, this.size.h);
      ctx.restore();
    }
    ctx.strokeStyle = style.stroke;
    ctx.lineWidth = 1;
    ctx.stroke();
  }

  hatchPattern(ctx) {
    if (!this.hatch) {
      const p = document.createElement('canvas');
      p.width = 8;
      p.height = 8;
      const pc = p.getContext('2d');
      pc.strokeStyle = 'rgba(150, 50, 0, 0.55)';
      pc.lineWidth = 1.5;
      pc.beginPath();
      pc.moveTo(0, 8);
      pc.lineTo(8, 0);
      pc.stroke();
      this.hatch = ctx.createPattern(p, 'repeat');
    }
    return this.hatch;
  }

  drawZone(ctx, z) {
    this.path(ctx, z.rings);
    const depth = (z.properties.zone || '').split('/').length;
    ctx.strokeStyle = depth <= 1 ? '#333333' : '#666666';
    ctx.lineWidth = depth <= 1 ? 2 : 1;
    ctx.setLineDash(depth <= 1 ? [] : [5, 4]);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  // Zone names where they fit: larger zones first, none over another.
  drawZoneNames(ctx) {
    ctx.font = '600 13px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    const placed = [];
    const zones = this.zones.filter((z) => z.centre).slice().sort((a, b) => (a.properties.zone || '').split('/').length - (b.properties.zone || '').split('/').length);
    for (const z of zones) {
      const [x, y] = this.toScreen(...z.centre);
      const name = this.label ? this.label(z.properties.zone) : z.properties.zone;
      const half = ctx.measureText(name).width / 2 + 3;
      const box = [x - half, y - 9, x + half, y + 9];
      if (placed.some((p) => p[0] < box[2] && box[0] < p[2] && p[1] < box[3] && box[1] < p[3])) continue;
      placed.push(box);
      ctx.lineWidth = 4;
      ctx.strokeStyle = 'rgba(255,255,255,0.85)';
      ctx.strokeText(name, x, y);
      ctx.fillStyle = '#1a1a1a';
      ctx.fillText(name, x, y);
    }
  }

  // Draws `list` (map entries of sirens) and returns where each went: its position by id,
  // and a grid of 32-pixel cells of them, for redrawing a few later.
  drawSirens(ctx, list, w, h) {
    const size = this.sirens.length > 2000 ? 3 : this.sirens.length > 300 ? 4.5 : 6.5;
    const v = this.view;
    const cx = w / 2 - v.cx * v.scale;
    const cy = h / 2 - v.cy * v.scale;
    const drawn = { size, cell: 32, at: new Map(), grid: new Map() };
    // Healthy first, so that a failure is never hidden under a healthy neighbour.
    const order = ['ok', 'unknown', 'degraded', 'unreachable', 'faulty', 'down'];
    const byState = new Map(order.map((st) => [st, []]));
    const inMaintenance = [];
    for (const m of list) {
      const x = m.world[0] * v.scale + cx;
      const y = m.world[1] * v.scale + cy;
      if (x < -12 || y < -12 || x > w + 12 || y > h + 12) continue;
      drawn.at.set(m.s.id, [x, y]);
      const key = `${Math.floor(x / drawn.cell)},${Math.floor(y / drawn.cell)}`;
      const cell = drawn.grid.get(key);
      if (cell) cell.push(m);
      else drawn.grid.set(key, [m]);
      (byState.get(m.s.state) || byState.get('unknown')).push(x, y);
      if (m.s.maintenance) inMaintenance.push(x, y);
    }
    if (inMaintenance.length) {
      ctx.beginPath();
      for (let i = 0; i < inMaintenance.length; i += 2) {
        ctx.moveTo(inMaintenance[i] + size * 1.9, inMaintenance[i + 1]);
        ctx.arc(inMaintenance[i], inMaintenance[i + 1], size * 1.9, 0, Math.PI * 2);
      }
      ctx.strokeStyle = '#0072B2';
      ctx.lineWidth = 2;
      ctx.setLineDash([2, 2]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    for (const state of order) {
      const points = byState.get(state);
      if (!points.length) continue;
      const style = STATE_STYLE[state];
      const r = state === 'ok' ? size : size * 1.35;
      ctx.beginPath();
      for (let i = 0; i < points.length; i += 2) addShape(ctx, style.shape, points[i], points[i + 1], r);
      paintShapes(ctx, style.shape, r, style.colour);
    }
    return drawn;
  }

  // The siren nearest (x, y) within reach of a finger.
  pick(x, y) {
    let best = null;
    let bestD = 14 * 14;
    for (const m of this.sirens) {
      const [sx, sy] = this.toScreen(...m.world);
      const d = (sx - x) ** 2 + (sy - y) ** 2;
      if (d < bestD) {
        bestD = d;
        best = m.s;
      }
    }
    return best;
  }

  drawTiles(ctx, w, h) {
    const v = this.view;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(v.scale))));
    const n = 2 ** z;
    const size = (TILE * v.scale) / n;
    const [wx0, wy0] = this.toWorld(0, 0);
    const [wx1, wy1] = this.toWorld(w, h);
    const tx0 = Math.max(0, Math.floor((wx0 / TILE) * n));
    const ty0 = Math.max(0, Math.floor((wy0 / TILE) * n));
    const tx1 = Math.min(n - 1, Math.floor((wx1 / TILE) * n));
    const ty1 = Math.min(n - 1, Math.floor((wy1 / TILE) * n));
    if ((tx1 - tx0 + 1) * (ty1 - ty0 + 1) > 400) return;
    for (let tx = tx0; tx <= tx1; tx++) {
      for (let ty = ty0; ty <= ty1; ty++) {
        const url = this.basemap.replace('{z}', z).replace('{x}', tx).replace('{y}', ty);
        let img = this.tiles.get(url);
        if (!img) {
          img = new Image();
          img.onload = () => {
            this.tilesLoaded = (this.tilesLoaded || 0) + 1;
            this.redraw();
          };
          img.src = url;
          this.tiles.set(url, img);
          if (this.tiles.size > 600) this.tiles.delete(this.tiles.keys().next().value);
        }
        if (img.complete && img.naturalWidth) {
          const [sx, sy] = this.toScreen((tx / n) * TILE, (ty / n) * TILE);
          ctx.drawImage(img, sx, sy, size + 0.5, size + 0.5);
        }
      }
    }
  }
}
