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
  lost_in_maintenance: { fill: 'rgba(0, 114, 178, 0.28)', stroke: '#0072B2', hatch: false },
  design_gap: { fill: 'rgba(120, 120, 120, 0.16)', stroke: 'rgba(120,120,120,0.5)', hatch: false },
};

function project(lon, lat) {
  const x = ((lon + 180) / 360) * TILE;
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  const y = (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * TILE;
  return [x, y];
}

// Draws `shape` of `size` (radius, px) at (x, y) on `ctx`.
export function drawShape(ctx, shape, x, y, size, colour) {
  ctx.beginPath();
  ctx.fillStyle = colour;
  ctx.strokeStyle = '#ffffff';
  ctx.lineWidth = Math.max(1, size / 4);
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
      ctx.arc(x, y, size, 0, Math.PI * 2);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(x, y, size * 0.55, 0, Math.PI * 2);
      ctx.fillStyle = '#ffffff';
      break;
    default:
      ctx.arc(x, y, size, 0, Math.PI * 2);
  }
  ctx.stroke();
  ctx.fill();
}

// An SVG icon of a state, for legends and lists.
export function stateIcon(state, size = 14) {
  const style = STATE_STYLE[state] || STATE_STYLE.unknown;
  const canvas = document.createElement('canvas');
  const ratio = window.devicePixelRatio || 1;
  canvas.width = size * ratio;
  canvas.height = size * ratio;
  canvas.style.width = `${size}px`;
  canvas.style.height = `${size}px`;
  canvas.className = 'state-icon';
  canvas.setAttribute('aria-hidden', 'true');
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  drawShape(ctx, style.shape, size / 2, size / 2, size * 0.36, style.colour);
  return canvas;
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
    new ResizeObserver(() => this.redraw()).observe(canvas);
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
        0: () => this.fit(),
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
    const [wx, wy] = this.toWorld(px, py);
    this.view.scale = Math.min(2 ** 20, Math.max(0.5, this.view.scale * factor));
    const [nx, ny] = this.toWorld(px, py);
    this.view.cx += wx - nx;
    this.view.cy += wy - ny;
    this.redraw();
  }

  toWorld(px, py) {
    const v = this.view;
    return [v.cx + (px - this.canvas.clientWidth / 2) / v.scale, v.cy + (py - this.canvas.clientHeight / 2) / v.scale];
  }

  toScreen(wx, wy) {
    const v = this.view;
    return [(wx - v.cx) * v.scale + this.canvas.clientWidth / 2, (wy - v.cy) * v.scale + this.canvas.clientHeight / 2];
  }

  // sirens: [{ id, name, state, maintenance, lon, lat }]; zones and ground: GeoJSON features.
  setData({ sirens, zones, ground }) {
    if (sirens) {
      this.sirens = sirens.map((s) => ({ ...s, world: project(s.lon, s.lat) }));
    }
    if (zones) this.zones = zones.map((f) => this.prepare(f));
    if (ground) this.ground = ground.map((f) => this.prepare(f));
    if (!this.view) this.fit();
    this.redraw();
  }

  // Updates one siren's state in place (the stream's state events), without rebuilding.
  setState(id, state) {
    const s = this.sirens.find((x) => x.id === id);
    if (s) {
      s.state = state;
      this.redraw();
    }
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
    for (const s of this.sirens) pts.push(s.world);
    for (const z of this.zones) for (const poly of z.rings) for (const p of poly[0] || []) pts.push(p);
    const w = this.canvas.clientWidth || 600;
    const h = this.canvas.clientHeight || 400;
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
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    if (!this.view) this.fit();
    const ctx = c.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = '#f4f1ea';
    ctx.fillRect(0, 0, w, h);
    if (this.basemap) this.drawTiles(ctx, w, h);
    for (const g of this.ground) this.drawGround(ctx, g);
    ctx.lineJoin = 'round';
    for (const z of this.zones) this.drawZone(ctx, z);
    this.drawSirens(ctx, w, h);
    this.drawZoneNames(ctx);
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
      ctx.fillRect(0, 0, this.canvas.clientWidth, this.canvas.clientHeight);
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

  drawSirens(ctx, w, h) {
    const size = this.sirens.length > 2000 ? 3 : this.sirens.length > 300 ? 4.5 : 6.5;
    // Healthy first, so that a failure is never hidden under a healthy neighbour.
    const order = ['ok', 'unknown', 'degraded', 'unreachable', 'faulty', 'down'];
    const byState = new Map(order.map((s) => [s, []]));
    for (const s of this.sirens) (byState.get(s.state) || byState.get('unknown')).push(s);
    for (const state of order) {
      const style = STATE_STYLE[state];
      for (const s of byState.get(state)) {
        const [x, y] = this.toScreen(...s.world);
        if (x < -10 || y < -10 || x > w + 10 || y > h + 10) continue;
        if (s.maintenance) {
          ctx.beginPath();
          ctx.strokeStyle = '#0072B2';
          ctx.lineWidth = 2;
          ctx.setLineDash([2, 2]);
          ctx.arc(x, y, size * 1.9, 0, Math.PI * 2);
          ctx.stroke();
          ctx.setLineDash([]);
        }
        drawShape(ctx, style.shape, x, y, state === 'ok' ? size : size * 1.35, style.colour);
      }
    }
  }

  // The siren nearest (x, y) within reach of a finger.
  pick(x, y) {
    let best = null;
    let bestD = 14 * 14;
    for (const s of this.sirens) {
      const [sx, sy] = this.toScreen(...s.world);
      const d = (sx - x) ** 2 + (sy - y) ** 2;
      if (d < bestD) {
        bestD = d;
        best = s;
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
          img.onload = () => this.redraw();
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
