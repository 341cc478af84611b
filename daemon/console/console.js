// The sirend console: one page, a view per task, following the daemon through /api/stream.
// It reads and writes the same API as any client, with the token its user logs in with; the
// token is kept for the browser session only (sessionStorage).
// Words are i18n.js's, elements and formats dom.js's, the map map.js's; this module holds
// the page's state, what it reads from the daemon, and the views.

import { WORDS } from './words.js';
import { FleetMap, GROUND_STYLE, STATE_STYLE, stateIcon } from './map.js';
import { lang, named, setLang, signalName, t } from './i18n.js';
import { ago, ask, badge, empty, fmtKm2, fmtNumber, fmtPeople, fmtTime, h, replace, resultTag, section, submitter, table, toast } from './dom.js';

// ---- words --------------------------------------------------------------------------------







// ---- DOM ----------------------------------------------------------------------------------




// ---- time and numbers ---------------------------------------------------------------------





// Local time of the configured time zone, with UTC beside it (once, where they are the same).
function timeBoth(iso) {
  if (!iso) return '—';
  const zone = app.settings ? app.settings.timezone : 'UTC';
  const local = fmtTime(iso, zone);
  const utc = fmtTime(iso, 'UTC');
  if (zone === 'UTC' || zone === 'Etc/UTC') return h('time', { datetime: iso, class: 'time-both' }, `${utc} UTC`);
  return h('span', { class: 'time-both' }, h('time', { datetime: iso }, `${local} (${zone})`), h('small', {}, ` · ${utc} UTC`));
}


// ---- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = 'GET', body, raw = false } = {}) {
  const headers = {};
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    let message = res.statusText;
    try {
      message = (await res.json()).error || message;
    } catch (_) {
      /* not JSON: keep the status text */
    }
    throw new ApiError(res.status, message);
  }
  if (raw) return res;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

// ---- the application state ----------------------------------------------------------------

const app = {
  token: sessionStorage.getItem('sirend.token') || '',
  me: null,
  settings: null,
  sirens: new Map(),
  coverage: null,
  zones: null,
  ground: null,
  soundings: [],
  activations: [],
  maintenance: [],
  live: 'connecting',
  // Who leads, when several daemons share the store (GET /api/leadership).
  leadership: null,
  zoneFilter: sessionStorage.getItem('sirend.zone') || '',
  view: null,
  listeners: new Set(),
  // Sirens changed since the views last drew (the map redraws only those).
  touched: new Set(),
};

const may = (permission) => Boolean(app.me && app.me.permissions.includes(permission));

function inFilter(zone) {
  if (!app.zoneFilter) return true;
  return zone === app.zoneFilter || zone.startsWith(`${app.zoneFilter}/`);
}

function zoneLabel(path) {
  if (!path) return '';
  return path;
}

// A zone's name on the map: without the root every zone shares (the city), so that towns fit.
function mapLabel(path) {
  const root = zonePaths().filter((z) => !z.includes('/'));
  if (root.length === 1 && path.startsWith(`${root[0]}/`)) return path.slice(root[0].length + 1);
  return path;
}

// Every zone path with its ancestors, in order (the fleet's zones change only with its
// configuration, so they are worked out once per fleet loaded).
let zoneCache = null;

function zonePaths() {
  if (zoneCache && zoneCache.of === app.sirens) return zoneCache.paths;
  const set = new Set();
  for (const s of app.sirens.values()) {
    const parts = s.zone.split('/');
    for (let i = 1; i <= parts.length; i++) set.add(parts.slice(0, i).join('/'));
  }
  zoneCache = { of: app.sirens, paths: [...set].sort() };
  return zoneCache.paths;
}

// What changed, for the views to redraw their live parts: coalesced, so that a burst of
// changes from the stream costs one redraw every 100 ms, not one per change.
const changes = new Set();
let changesTimer = 0;

// How the page keeps up with the daemon (BENCHMARKS.md reads it): events received, and for the
// state changes shown, ms from the daemon recording one to the page redrawing with it.
const stats = { events: 0, shownLagMs: [] };
window.sirendStats = stats;
let unshown = [];

function changed(what) {
  changes.add(what);
  if (changesTimer) return;
  changesTimer = setTimeout(() => {
    changesTimer = 0;
    const list = [...changes];
    changes.clear();
    for (const w of list) for (const l of [...app.listeners]) l(w);
    app.touched.clear();
    const now = Date.now();
    for (const at of unshown) stats.shownLagMs.push(now - at);
    if (stats.shownLagMs.length > 100000) stats.shownLagMs.splice(0, 50000);
    unshown = [];
  }, 250);
}

const severity = { down: 5, faulty: 4, unreachable: 3, degraded: 2, unknown: 1, ok: 0 };

// ---- loading ------------------------------------------------------------------------------

async function loadSirens() {
  // A token for one zone (a crew's, a town's) reads only that zone's sirens: on a phone, over
  // a mobile network, that is what the crew came for.
  const only = app.me && app.me.zones.length === 1 ? `?zone=${encodeURIComponent(app.me.zones[0])}` : '';
  const list = await api(`/api/sirens${only}`);
  app.sirens = new Map(list.map((s) => [s.id, s]));
  changed('fleet');
}

async function loadCoverage() {
  try {
    const [summary, ground] = await Promise.all([api('/api/coverage'), api('/api/coverage.geojson')]);
    app.coverage = summary;
    app.ground = ground.features || [];
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
    app.coverage = null;
    app.ground = [];
  }
  changed('coverage');
}

async function loadSoundings() {
  app.soundings = await api('/api/soundings');
  changed('soundings');
}

async function loadActivations() {
  app.activations = await api('/api/activations');
  changed('activations');
  renderLiveBanner();
}

async function loadMaintenance() {
  app.maintenance = await api('/api/maintenance');
  changed('maintenance');
}

// Refreshes that the stream asks for, coalesced: a burst of changes costs a request per
// thing changed, a few sirens at a time, never the whole fleet again; coverage (computed over
// the whole map) at most every five seconds.
const pending = { sirens: new Set(), coverage: false, soundings: false, activations: false, maintenance: false };
const SIRENS_PER_FLUSH = 20;
const COVERAGE_EVERY_MS = 5000;
let flushTimer = 0;
let coverageAt = 0;

function want(what, siren) {
  if (what === 'siren') pending.sirens.add(siren);
  else pending[what] = true;
  if (!flushTimer) flushTimer = setTimeout(flush, 400);
}

async function flush() {
  flushTimer = 0;
  const sirens = [...pending.sirens].slice(0, SIRENS_PER_FLUSH);
  for (const id of sirens) pending.sirens.delete(id);
  const coverage = pending.coverage && Date.now() - coverageAt >= COVERAGE_EVERY_MS;
  const { soundings, activations, maintenance } = pending;
  Object.assign(pending, { coverage: pending.coverage && !coverage, soundings: false, activations: false, maintenance: false });
  const jobs = [];
  if (sirens.length) {
    jobs.push(
      Promise.all(sirens.map((id) => api(`/api/sirens/${encodeURIComponent(id)}`).catch(() => null))).then((got) => {
        // Updated in place: the map and the views hold these records.
        for (const s of got) {
          if (s && app.sirens.has(s.id)) {
            Object.assign(app.sirens.get(s.id), s);
            app.touched.add(s.id);
          }
        }
        changed('sirens');
      }),
    );
  }
  if (coverage) {
    coverageAt = Date.now();
    jobs.push(loadCoverage());
  }
  if (soundings) jobs.push(loadSoundings());
  if (activations) jobs.push(loadActivations());
  if (maintenance) jobs.push(loadMaintenance());
  await Promise.allSettled(jobs);
  if (pending.sirens.size || pending.coverage) flushTimer = setTimeout(flush, 400);
}

// ---- following the daemon -----------------------------------------------------------------

let lastEventId = null;
let streamAbort = null;

function setLive(status) {
  app.live = status;
  const el = document.getElementById('live-status');
  if (!el) return;
  el.className = `live-status live-${status}`;
  replace(el, h('span', { class: 'dot', 'aria-hidden': 'true' }), t(`live.${status}`));
}

// Which control room this is, when several daemons share the store: the leader commands; a
// standby passes every write to it.
function roleText(l) {
  if (!l || !l.shared) return '';
  if (l.leads) return t('role.leading', { name: l.name });
  if (l.leader) return t('role.standby', { name: l.name, leader: l.leader.name });
  return t('role.none');
}

function setRole() {
  const el = document.getElementById('role-status');
  if (!el) return;
  const l = app.leadership;
  el.className = `role-status${l && l.shared && !l.leads ? (l.leader ? ' standby' : ' none') : ''}`;
  el.textContent = roleText(l);
}

async function followLeadership() {
  for (;;) {
    try {
      app.leadership = await api('/api/leadership');
    } catch (e) {
      app.leadership = null;
    }
    setRole();
    await new Promise((r) => setTimeout(r, 5000));
  }
}

async function follow() {
  if (streamAbort) streamAbort.abort();
  const abort = new AbortController();
  streamAbort = abort;
  for (;;) {
    try {
      const headers = { Accept: 'text/event-stream' };
      if (app.token) headers.Authorization = `Bearer ${app.token}`;
      if (lastEventId !== null) headers['Last-Event-ID'] = String(lastEventId);
      const res = await fetch('/api/stream', { headers, signal: abort.signal });
      if (!res.ok) throw new ApiError(res.status, res.statusText);
      setLive('live');
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          onBlock(block);
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
    }
    if (abort.signal.aborted) return;
    setLive('reconnecting');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function onBlock(block) {
  let data = '';
  let id = null;
  for (const line of block.split('\n')) {
    if (line.startsWith('data:')) data += line.slice(5).trimStart();
    else if (line.startsWith('id:')) id = Number(line.slice(3).trim());
  }
  if (!data) return;
  if (id !== null && !Number.isNaN(id)) lastEventId = id;
  let event;
  try {
    event = JSON.parse(data);
  } catch (_) {
    return;
  }
  onEvent(event);
}

// What an event changes. A state change and a fault raised or cleared say all there is to
// know and are applied at once; anything else about a siren is read again from the daemon.
function onEvent(e) {
  const kind = e.kind;
  stats.events += 1;
  const s = e.siren ? app.sirens.get(e.siren) : null;
  if (s && kind === 'state') {
    const m = /->\s*([a-z_]+)/.exec(e.detail || '');
    if (m) {
      s.state = m[1];
      s.since = e.at;
      app.touched.add(s.id);
      unshown.push(Date.parse(e.at));
      changed('sirens');
    }
    want('coverage');
  } else if (s && (kind === 'fault_raised' || kind === 'fault_cleared')) {
    const others = s.faults.filter((f) => f !== e.detail);
    s.faults = kind === 'fault_raised' ? [...others, e.detail] : others;
    app.touched.add(s.id);
    changed('sirens');
    want('coverage');
  } else if (s) {
    want('siren', e.siren);
  }
  if (kind.startsWith('maintenance')) {
    want('maintenance');
    want('coverage');
    // A zone's window names no siren: every siren's record says whether it is in one.
    if (!e.siren) loadSirens().catch(() => {});
  }
  if (kind.startsWith('sounding') || kind === 'stop_complete' || kind === 'silent') want('soundings');
  // The siren's own page shows what only a fresh read has (telemetry, acknowledgement).
  if (s && route().name === 'siren' && route().arg === e.siren) want('siren', e.siren);
  if (kind.startsWith('live') || kind === 'stop_complete' || kind === 'cap_alert' || kind === 'uncommanded_activation') {
    want('activations');
    want('soundings');
  }
  for (const l of app.listeners) l('event', e);
}

// ---- the frame: header, navigation, the LIVE banner ---------------------------------------

const VIEWS = {};

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, ...rest] = hash.split('/');
  return { name: name || 'overview', arg: rest.map(decodeURIComponent).join('/') };
}

function navLink(name, label, cls) {
  const current = route().name === name;
  return h('a', { href: `#/${name}`, class: `nav-${name} ${cls || ''}`, 'aria-current': current ? 'page' : null }, label);
}

function renderHeader() {
  const header = document.getElementById('top');
  const zones = zonePaths().filter((z) => !app.me || !app.me.zones.length || app.me.zones.some((m) => z === m || z.startsWith(`${m}/`)));
  const zoneSelect = h(
    'select',
    {
      id: 'zone-filter',
      'aria-label': t('header.zone_filter'),
      onchange: (ev) => {
        app.zoneFilter = ev.target.value;
        sessionStorage.setItem('sirend.zone', app.zoneFilter);
        changed('filter');
      },
    },
    h('option', { value: '' }, t('header.all_zones')),
    zones.map((z) => h('option', { value: z, selected: z === app.zoneFilter }, zoneLabel(z))),
  );
  const other = lang === 'zh-CN' ? 'en' : 'zh-CN';
  replace(
    header,
    h('a', { class: 'brand', href: '#/overview' }, h('strong', {}, t('app.name')), h('small', {}, t('app.subtitle'))),
    h(
      'nav',
      { 'aria-label': t('header.nav') },
      navLink('overview', t('nav.overview')),
      navLink('soundings', t('nav.soundings')),
      navLink('warning', t('nav.warning'), 'nav-danger'),
      navLink('events', t('nav.events')),
      may('admin') ? navLink('audit', t('nav.audit')) : null,
    ),
    h(
      'div',
      { class: 'session' },
      zoneSelect,
      h('span', { id: 'role-status', class: 'role-status' }, roleText(app.leadership)),
      h('span', { id: 'live-status', class: `live-status live-${app.live}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), t(`live.${app.live}`)),
      h(
        'button',
        {
          type: 'button',
          class: 'lang',
          lang: other,
          onclick: () => {
            setLang(other);
            renderAll();
          },
        },
        other === 'zh-CN' ? '中文' : 'English',
      ),
      app.me && app.me.name !== 'anonymous'
        ? h(
            'span',
            { class: 'who' },
            h('span', { class: 'user', title: app.me.zones.length ? app.me.zones.join(', ') : t('header.every_zone') }, app.me.name),
            h('button', { type: 'button', class: 'link', onclick: logout }, t('header.logout')),
          )
        : h('a', { class: 'button', href: '#/login' }, t('header.login')),
    ),
  );
}

function activeWarnings() {
  return app.activations.filter((a) => !a.false_alarm && !a.stopped && (a.state === 'requested' || a.state === 'approved') && !ended(a));
}

function ended(a) {
  if (a.state === 'approved' && a.campaign) {
    const c = app.soundings.find((x) => x.id === a.campaign);
    return Boolean(c && ['done', 'cancelled', 'missed', 'verifying'].includes(c.phase));
  }
  return false;
}

function renderLiveBanner() {
  const banner = document.getElementById('live-banner');
  const active = activeWarnings();
  if (!active.length) {
    banner.hidden = true;
    replace(banner);
    return;
  }
  banner.hidden = false;
  const sounding = active.filter((a) => a.state === 'approved');
  const waiting = active.filter((a) => a.state === 'requested');
  replace(
    banner,
    h(
      'div',
      { class: 'banner-text', role: 'alert' },
      h('strong', {}, sounding.length ? t('banner.sounding', { n: sounding.length }) : t('banner.waiting', { n: waiting.length })),
      ' ',
      active.map((a) => h('a', { href: '#/warning' }, `#${a.id} ${signalName(a.signal)} · ${targetText(a)}`)),
    ),
    may('stop') && sounding.length ? stopButton(sounding) : null,
  );
}

// One step: no confirmation, no second person (docs/operations.md).
function stopButton(activations) {
  return h(
    'button',
    {
      type: 'button',
      class: 'stop-all',
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const zones = [...new Set(activations.flatMap((a) => a.zones))];
          const sirens = [...new Set(activations.filter((a) => !a.zones.length).flatMap((a) => a.sirens))];
          await api('/api/stop', { method: 'POST', body: { zones, sirens, reason: t('stop.reason_banner') } });
          toast(t('stop.sent'));
          want('activations');
        } catch (e) {
          toast(e.message, true);
        } finally {
          ev.target.disabled = false;
        }
      },
    },
    t('stop.button'),
  );
}

function targetText(a) {
  if (a.zones && a.zones.length) return a.zones.map(zoneLabel).join(', ');
  if (a.area) return t('warning.area_sirens', { n: a.sirens.length });
  if (a.sirens && a.sirens.length && a.sirens.length < app.sirens.size) return t('warning.n_sirens', { n: a.sirens.length });
  return t('warning.whole_fleet');
}

// How many sirens a warning sounds: those it lists, else those of its zones, else all.
function sirenCount(a) {
  const zones = a.zones || [];
  const listed = new Set(a.sirens || []);
  if (!zones.length && listed.size) return listed.size;
  let n = 0;
  for (const s of app.sirens.values()) {
    if (listed.has(s.id) || (zones.length ? zones.some((z) => s.zone === z || s.zone.startsWith(`${z}/`)) : true)) n += 1;
  }
  return n;
}



function logout() {
  app.token = '';
  sessionStorage.removeItem('sirend.token');
  start();
}

// ---- views --------------------------------------------------------------------------------




function sirenLink(id) {
  const s = app.sirens.get(id);
  return h('a', { href: `#/siren/${encodeURIComponent(id)}` }, s ? `${s.name} (${id})` : id);
}

// Overview: the duty officer's screen.
VIEWS.overview = {
  title: () => t('nav.overview'),
  mount(main) {
    const canvas = h('canvas', { class: 'map', tabindex: '0', role: 'img', 'aria-label': t('map.label') });
    this.map = new FleetMap(canvas, {
      basemap: app.settings.basemap,
      onPick: (s) => (location.hash = `#/siren/${encodeURIComponent(s.id)}`),
      label: mapLabel,
    });
    // New containers: whatever was drawn into the last ones is not there.
    this.countsDrawn = null;
    this.alarmsDrawn = null;
    this.parts = {
      counts: h('div', { class: 'counts' }),
      lost: h('div'),
      failed: h('div'),
      alarms: h('div'),
      next: h('div'),
      warning: h('div'),
    };
    const legend = h(
      'ul',
      { class: 'legend' },
      Object.keys(STATE_STYLE).map((s) => h('li', {}, stateIcon(s), named('state', s))),
      h('li', {}, h('span', { class: 'swatch maint-ring', 'aria-hidden': 'true' }), t('map.in_maintenance')),
      Object.keys(GROUND_STYLE).map((k) =>
        h('li', {}, h('span', { class: `swatch ground-${k}`, 'aria-hidden': 'true' }), t(`ground.${k}`)),
      ),
    );
    const attribution = app.settings.basemap && app.settings.basemap_attribution ? h('p', { class: 'attribution' }, app.settings.basemap_attribution) : null;
    replace(
      main,
      h(
        'div',
        { class: 'overview' },
        h('div', { class: 'map-panel panel' }, h('h2', {}, t('map.title')), canvas, legend, attribution, h('p', { class: 'hint' }, t('map.hint'))),
        h(
          'div',
          { class: 'side' },
          this.parts.warning,
          section(t('overview.lost_title'), this.parts.lost),
          section(t('overview.alarms_title'), this.parts.alarms),
          section(t('overview.failed_title'), this.parts.failed),
          section(t('overview.counts_title'), this.parts.counts),
          section(t('overview.next_title'), this.parts.next),
        ),
      ),
    );
    this.update('all');
  },
  update(what) {
    if (['all', 'fleet', 'sirens', 'filter', 'maintenance'].includes(what)) {
      const sirens = [...app.sirens.values()].filter((s) => inFilter(s.zone));
      if (what === 'sirens') this.map.touch(app.touched);
      else if (what === 'maintenance') this.map.full();
      else this.map.setData({ sirens });
      this.renderCounts(sirens);
      this.alarmsSoon(what);
    }
    if (['all', 'coverage', 'filter'].includes(what)) {
      const zoneFeatures = app.zones ? app.zones.features.filter((f) => inFilter(f.properties.zone)) : [];
      const ground = (app.ground || []).filter((f) => inFilter(f.properties.zone || ''));
      this.map.setData({ zones: zoneFeatures, ground });
      this.renderLost();
      this.renderFailed();
    }
    if (['all', 'soundings', 'filter'].includes(what)) this.renderNext();
    if (['all', 'activations', 'soundings'].includes(what)) this.renderWarning();
  },
  renderCounts(sirens) {
    const counts = {};
    for (const s of sirens) counts[s.state] = (counts[s.state] || 0) + 1;
    const maint = sirens.filter((s) => s.maintenance).length;
    const acked = sirens.filter((s) => s.acknowledged).length;
    // Only what changed is redrawn: a stream of changes must not lay the page out each time.
    const signature = JSON.stringify([counts, maint, acked, sirens.length, lang]);
    if (signature === this.countsDrawn) return;
    this.countsDrawn = signature;
    replace(
      this.parts.counts,
      h(
        'dl',
        { class: 'count-list' },
        Object.keys(STATE_STYLE).map((st) => h('div', { class: `count count-${st}` }, h('dt', {}, badge(st)), h('dd', { 'data-state': st }, fmtNumber(counts[st] || 0)))),
        h('div', { class: 'count' }, h('dt', {}, t('overview.in_maintenance')), h('dd', { 'data-state': 'maintenance' }, fmtNumber(maint))),
        h('div', { class: 'count' }, h('dt', {}, t('overview.acknowledged')), h('dd', {}, fmtNumber(acked))),
        h('div', { class: 'count total' }, h('dt', {}, t('overview.total')), h('dd', { 'data-state': 'total' }, fmtNumber(sirens.length))),
      ),
    );
  },
  renderLost() {
    const c = app.coverage;
    if (!c) {
      replace(this.parts.lost, empty(t('overview.no_coverage')));
      return;
    }
    const losing = c.zones.filter((z) => inFilter(z.zone) && (z.lost.area_m2 > 0 || z.lost.in_maintenance.area_m2 > 0));
    // The sum first (the filtered zone, or each city), then the smallest zones that lose
    // anything, ordered by people: the zones in between repeat their towns' figures.
    const top = losing.filter((z) => (app.zoneFilter ? z.zone === app.zoneFilter : !z.zone.includes('/')));
    const leaves = losing.filter((z) => !top.includes(z) && !losing.some((o) => o.zone.startsWith(`${z.zone}/`)));
    const failures = (z) => Math.max(0, (z.lost.population ?? 0) - (z.lost.in_maintenance.population ?? 0));
    leaves.sort((a, b) => failures(b) - failures(a) || b.lost.area_m2 - a.lost.area_m2);
    const rows = [...top, ...leaves];
    if (!rows.length) {
      replace(this.parts.lost, h('p', { class: 'all-good' }, t('overview.nobody_lost')));
      return;
    }
    const pop = c.population;
    replace(
      this.parts.lost,
      table(
        [t('col.zone'), [pop ? t('col.people_failures') : t('col.area_failures'), 'num'], [pop ? t('col.people_maintenance') : t('col.area_maintenance'), 'num'], [t('col.area_km2'), 'num']],
        rows.map((z) =>
          h(
            'tr',
            { class: `${top.includes(z) ? 'total-row' : ''} ${z.lost_alert ? 'row-alert' : ''}` },
            h('th', { scope: 'row' }, zoneLabel(z.zone)),
            h('td', { class: 'num strong' }, pop ? fmtPeople(failures(z)) : fmtKm2(z.lost.area_m2 - z.lost.in_maintenance.area_m2)),
            h('td', { class: 'num' }, pop ? fmtPeople(z.lost.in_maintenance.population) : fmtKm2(z.lost.in_maintenance.area_m2)),
            h('td', { class: 'num' }, fmtKm2(z.lost.area_m2)),
          ),
        ),
        'lost-table',
      ),
    );
  },
  renderFailed() {
    const c = app.coverage;
    const list = c ? c.failed_sirens.filter((f) => inFilter(f.zone)) : [];
    if (!list.length) {
      replace(this.parts.failed, empty(t('overview.no_failed')));
      return;
    }
    list.sort((a, b) => (b.population ?? 0) - (a.population ?? 0) || b.area_m2 - a.area_m2);
    replace(
      this.parts.failed,
      h(
        'ol',
        { class: 'ranked' },
        list.slice(0, 25).map((f) => {
          const s = app.sirens.get(f.siren);
          return h(
            'li',
            {},
            sirenLink(f.siren),
            ' ',
            s ? badge(s.state) : null,
            h('span', { class: 'loss' }, c.population ? t('overview.people_lost', { n: fmtPeople(f.population) }) : t('overview.area_lost', { n: fmtKm2(f.area_m2) })),
            f.in_maintenance ? h('span', { class: 'tag' }, t('overview.in_maintenance')) : null,
          );
        }),
      ),
      list.length > 25 ? h('p', { class: 'hint' }, t('overview.more', { n: list.length - 25 })) : null,
    );
  },
  // The alarm table follows at most once a second: a burst of changes redraws the map and
  // the counts as they come, and the table when it settles.
  alarmsSoon(what) {
    const wait = what === 'sirens' ? 1000 - (Date.now() - (this.alarmsAt || 0)) : 0;
    clearTimeout(this.alarmsTimer);
    const draw = () => {
      this.alarmsAt = Date.now();
      this.renderAlarms([...app.sirens.values()].filter((s) => inFilter(s.zone)));
    };
    if (wait <= 0) draw();
    else this.alarmsTimer = setTimeout(draw, wait);
  },
  renderAlarms(sirens) {
    const open = sirens.filter((s) => s.state !== 'ok' && s.state !== 'unknown');
    open.sort((a, b) => Boolean(a.acknowledged) - Boolean(b.acknowledged) || severity[b.state] - severity[a.state] || a.since.localeCompare(b.since));
    const shown = open.slice(0, 200);
    const signature = JSON.stringify([open.length, lang, Math.floor(Date.now() / 30000), shown.map((s) => [s.id, s.state, s.since, s.faults, s.acknowledged && s.acknowledged.by])]);
    if (signature === this.alarmsDrawn) return;
    this.alarmsDrawn = signature;
    if (!open.length) {
      replace(this.parts.alarms, h('p', { class: 'all-good' }, t('overview.no_alarms')));
      return;
    }
    replace(
      this.parts.alarms,
      table(
        [t('col.siren'), t('col.state'), t('col.since'), t('col.faults'), t('col.acknowledged')],
        shown.map((s) =>
          h(
            'tr',
            { 'data-siren': s.id },
            h('th', { scope: 'row' }, sirenLink(s.id)),
            h('td', {}, badge(s.state)),
            h('td', { title: s.since }, ago(s.since)),
            h('td', {}, s.faults.map((f) => named('fault', f)).join(', ') || '—'),
            h(
              'td',
              {},
              s.acknowledged
                ? h('span', { class: 'acked' }, t('overview.acked_by', { by: s.acknowledged.by }))
                : may('acknowledge')
                  ? h('a', { class: 'button small', href: `#/siren/${encodeURIComponent(s.id)}` }, t('action.acknowledge'))
                  : h('span', { class: 'unacked' }, t('overview.not_acked')),
            ),
          ),
        ),
        'alarms',
      ),
      open.length > 200 ? h('p', { class: 'hint' }, t('overview.more', { n: open.length - 200 })) : null,
    );
  },
  renderNext() {
    const upcoming = app.soundings.filter((c) => ['planned', 'arming', 'running'].includes(c.phase)).sort((a, b) => a.instant.localeCompare(b.instant));
    if (!upcoming.length) {
      replace(this.parts.next, empty(t('overview.no_next')));
      return;
    }
    const c = upcoming[0];
    replace(
      this.parts.next,
      h(
        'p',
        { class: 'next' },
        h('a', { href: `#/soundings/${c.id}` }, `#${c.id} ${c.schedule}`),
        ' · ',
        named('kind', c.kind),
        ' · ',
        named('phase', c.phase),
        h('br'),
        timeBoth(c.instant),
        ' · ',
        t('soundings.n_targets', { n: c.targets }),
      ),
    );
  },
  renderWarning() {
    const active = activeWarnings();
    if (!active.length) {
      replace(this.parts.warning);
      return;
    }
    replace(
      this.parts.warning,
      h(
        'section',
        { class: 'panel danger' },
        h('h2', {}, t('overview.live_title')),
        active.map((a) => h('p', {}, h('a', { href: '#/warning' }, `#${a.id}`), ' ', liveState(a), ' ', signalName(a.signal), ' · ', targetText(a))),
      ),
    );
  },
};

function liveState(a) {
  if (a.false_alarm) return h('span', { class: 'live-tag false-alarm' }, t('warning.state_false_alarm'));
  if (a.stopped) return h('span', { class: 'live-tag stopped' }, t('warning.state_stopped'));
  if (a.state === 'approved' && ended(a)) return h('span', { class: 'live-tag over' }, t('warning.state_over'));
  return h('span', { class: `live-tag live-${a.state}` }, named('standing', a.state));
}

// One siren: what it says about itself, what happened to it, and what a person may do.
VIEWS.siren = {
  title: (arg) => t('siren.title', { id: arg }),
  mount(main, id) {
    this.id = id;
    this.parts = { head: h('div'), facts: h('div'), actions: h('div'), history: h('div') };
    replace(main, h('div', { class: 'siren-view' }, this.parts.head, h('div', { class: 'columns' }, this.parts.facts, this.parts.actions), this.parts.history));
    this.update('all');
    this.loadHistory();
  },
  async loadHistory() {
    try {
      const history = await api(`/api/sirens/${encodeURIComponent(this.id)}/history`);
      this.renderHistory(history);
    } catch (e) {
      replace(this.parts.history, section(t('siren.history'), empty(e.message)));
    }
  },
  update(what, event) {
    const s = app.sirens.get(this.id);
    if (!s) {
      replace(this.parts.head, h('h1', {}, t('siren.unknown', { id: this.id })));
      return;
    }
    if (what === 'event') {
      if (event && event.siren === this.id) {
        clearTimeout(this.historyTimer);
        this.historyTimer = setTimeout(() => this.loadHistory(), 800);
      }
      return;
    }
    if (!['all', 'fleet', 'sirens', 'maintenance'].includes(what)) return;
    replace(
      this.parts.head,
      h('h1', {}, s.name, ' ', h('small', {}, s.id)),
      h('p', { class: 'siren-state' }, badge(s.state), ' ', t('siren.since', { when: `${fmtTime(s.since)} (${ago(s.since)})` }), ' · ', t('col.zone'), ': ', zoneLabel(s.zone), s.maintenance ? h('span', { class: 'tag' }, t('overview.in_maintenance')) : null),
    );
    const tm = s.telemetry;
    const fact = (label, value) => h('div', { class: 'fact' }, h('dt', {}, label), h('dd', {}, value));
    replace(
      this.parts.facts,
      section(
        t('siren.condition'),
        h(
          'dl',
          { class: 'facts' },
          fact(t('col.faults'), s.faults.length ? s.faults.map((f) => named('fault', f)).join(', ') : t('siren.no_faults')),
          fact(t('siren.mains'), tm ? (tm.mains_present ? t('siren.mains_on') : h('strong', { class: 'bad' }, t('siren.mains_off'))) : '—'),
          fact(t('siren.battery'), tm ? `${fmtNumber(tm.battery_volts, 1)} V${tm.battery_soc !== null ? ` · ${tm.battery_soc}%` : ''}` : '—'),
          fact(t('siren.amplifiers'), s.faults.some((f) => ['amplifier_failed', 'channel_degraded', 'speaker_failed', 'driver_failed'].includes(f)) ? h('strong', { class: 'bad' }, t('siren.amplifiers_fault')) : t('siren.amplifiers_ok')),
          fact(t('siren.door'), tm ? (tm.door_open ? h('strong', { class: 'bad' }, t('siren.door_open')) : t('siren.door_closed')) : '—'),
          fact(t('siren.temperature'), tm && tm.cabinet_temp_c !== null ? `${fmtNumber(tm.cabinet_temp_c, 1)} °C` : '—'),
          fact(t('siren.clock_offset'), tm ? `${fmtNumber(tm.clock_offset_us / 1000, 1)} ms` : '—'),
          fact(t('siren.links'), h('span', {}, s.links.map((l) => h('span', { class: `link-state ${l.up ? 'up' : 'down'}` }, `${l.link}: ${l.up ? t('siren.link_up') : t('siren.link_down')}`)))),
          fact(t('siren.last_seen'), s.last_seen ? ago(s.last_seen) : '—'),
          fact(t('siren.firmware'), tm ? tm.firmware : '—'),
          s.command_fault ? fact(t('siren.command_fault'), t('siren.unanswered', { n: s.command_fault.unanswered })) : null,
          s.acknowledged ? fact(t('col.acknowledged'), `${s.acknowledged.by}: ${s.acknowledged.note || '—'}${s.acknowledged.until ? ` (${t('siren.until')} ${fmtTime(s.acknowledged.until)})` : ''}`) : null,
          s.maintenance ? fact(t('overview.in_maintenance'), `${s.maintenance.by}: ${s.maintenance.reason} (${t('siren.until')} ${fmtTime(s.maintenance.until)})`) : null,
        ),
      ),
    );
    if (what !== 'all' && this.formsBuilt === s.state + Boolean(s.maintenance) + Boolean(s.acknowledged)) return;
    this.formsBuilt = s.state + Boolean(s.maintenance) + Boolean(s.acknowledged);
    replace(this.parts.actions, this.actions(s));
  },
  actions(s) {
    const forms = [];
    if (may('acknowledge') && s.state !== 'ok' && s.state !== 'unknown' && !s.acknowledged) {
      const note = h('textarea', { name: 'note', rows: '2', maxlength: '1000', id: 'ack-note' });
      const until = h('input', { type: 'datetime-local', name: 'until', id: 'ack-until' });
      forms.push(
        h(
          'form',
          {
            class: 'action',
            onsubmit: submitter(async () => {
              const body = { note: note.value.trim() };
              if (until.value) body.until = new Date(until.value).toISOString();
              await api(`/api/sirens/${encodeURIComponent(s.id)}/ack`, { method: 'POST', body });
              toast(t('siren.acked'));
              want('siren', s.id);
            }),
          },
          h('h3', {}, t('action.acknowledge')),
          h('p', { class: 'hint' }, t('siren.ack_hint')),
          h('label', { for: 'ack-note' }, t('field.note')),
          note,
          h('label', { for: 'ack-until' }, t('field.until_optional')),
          until,
          h('button', { type: 'submit' }, t('action.acknowledge')),
        ),
      );
    }
    if (may('maintenance')) {
      const window = app.maintenance.find((w) => w.in_force && w.scope === 'siren' && w.target === s.id);
      if (s.maintenance && window) {
        const note = h('input', { type: 'text', name: 'note', id: 'end-note', maxlength: '1000' });
        forms.push(
          h(
            'form',
            {
              class: 'action',
              onsubmit: submitter(async () => {
                await api(`/api/maintenance/${window.id}/end`, { method: 'POST', body: { note: note.value.trim() } });
                toast(t('siren.maintenance_ended'));
                want('maintenance');
              }),
            },
            h('h3', {}, t('action.end_maintenance')),
            h('label', { for: 'end-note' }, t('field.note')),
            note,
            h('button', { type: 'submit' }, t('action.end_maintenance')),
          ),
        );
      } else if (!s.maintenance) {
        const reason = h('input', { type: 'text', name: 'reason', id: 'maint-reason', required: true, maxlength: '1000' });
        const until = h('input', { type: 'datetime-local', name: 'until', id: 'maint-until', required: true });
        forms.push(
          h(
            'form',
            {
              class: 'action',
              onsubmit: submitter(async () => {
                await api('/api/maintenance', { method: 'POST', body: { siren: s.id, reason: reason.value.trim(), until: new Date(until.value).toISOString() } });
                toast(t('siren.maintenance_started'));
                want('maintenance');
              }),
            },
            h('h3', {}, t('action.start_maintenance')),
            h('p', { class: 'hint' }, t('siren.maintenance_hint')),
            h('label', { for: 'maint-reason' }, t('field.reason')),
            reason,
            h('label', { for: 'maint-until' }, t('field.until')),
            until,
            h('button', { type: 'submit' }, t('action.start_maintenance')),
          ),
        );
      }
    }
    if (!forms.length) return section(t('siren.actions'), empty(app.me && app.me.name !== 'anonymous' ? t('siren.no_actions') : t('siren.login_to_act')));
    return section(t('siren.actions'), forms);
  },
  renderHistory(history) {
    const s = history.summary;
    replace(
      this.parts.history,
      section(
        t('siren.history'),
        h('p', {}, t('siren.history_summary', { outages: s.outages, open: s.open, passed: s.soundings_passed, judged: s.soundings_judged })),
        h('h3', {}, t('siren.outages')),
        history.outages.length
          ? table(
              [t('col.start'), t('col.end'), t('col.worst'), t('col.faults'), t('col.acknowledged')],
              history.outages
                .slice()
                .reverse()
                .slice(0, 50)
                .map((o) => h('tr', {}, h('td', {}, fmtTime(o.start)), h('td', {}, o.end ? fmtTime(o.end) : h('strong', {}, t('siren.open'))), h('td', {}, badge(o.worst)), h('td', {}, o.faults.map((f) => named('fault', f)).join(', ') || '—'), h('td', {}, o.acknowledged ? o.acknowledged.detail || '✓' : '—'))),
            )
          : empty(t('siren.no_outages')),
        h('h3', {}, t('siren.soundings')),
        history.soundings.length
          ? table(
              [t('col.campaign'), t('col.kind'), t('col.instant'), t('col.result')],
              history.soundings
                .slice()
                .reverse()
                .slice(0, 50)
                .map((x) => h('tr', {}, h('td', {}, h('a', { href: `#/soundings/${x.campaign}` }, `#${x.campaign} ${x.schedule}`)), h('td', {}, named('kind', x.kind)), h('td', {}, fmtTime(x.instant)), h('td', {}, resultTag(x.result)))),
            )
          : empty(t('siren.no_soundings')),
        h('h3', {}, t('siren.changes')),
        history.changes.length
          ? table(
              [t('col.at'), t('col.from'), t('col.to'), t('col.cause')],
              history.changes
                .slice()
                .reverse()
                .slice(0, 100)
                .map((c) => h('tr', {}, h('td', {}, fmtTime(c.at)), h('td', {}, badge(c.from)), h('td', {}, badge(c.to)), h('td', {}, named('cause', c.cause)))),
            )
          : empty(t('siren.no_changes')),
      ),
    );
  },
};




// Soundings: the test engineer's index, upcoming soundings, and ad-hoc tests.
VIEWS.soundings = {
  title: () => t('nav.soundings'),
  mount(main, arg) {
    if (arg) {
      VIEWS.report.mount.call(VIEWS.report, main, arg);
      this.delegate = VIEWS.report;
      return;
    }
    this.delegate = null;
    this.parts = { upcoming: h('div'), index: h('div') };
    replace(main, h('div', { class: 'soundings' }, section(t('soundings.upcoming'), this.parts.upcoming), may('schedule_test') ? this.scheduleForm() : null, section(t('soundings.index'), this.parts.index)));
    this.update('all');
  },
  update(what, e) {
    if (this.delegate) {
      this.delegate.update(what, e);
      return;
    }
    if (!['all', 'soundings', 'filter'].includes(what)) return;
    const list = app.soundings.slice().sort((a, b) => b.instant.localeCompare(a.instant));
    const upcoming = list.filter((c) => ['planned', 'arming', 'running'].includes(c.phase)).reverse();
    const past = list.filter((c) => !['planned', 'arming', 'running'].includes(c.phase));
    const row = (c) =>
      h(
        'tr',
        { 'data-campaign': c.id },
        h('th', { scope: 'row' }, h('a', { href: `#/soundings/${c.id}` }, `#${c.id}`)),
        h('td', {}, c.schedule, c.note ? h('small', { class: 'note' }, ` ${c.note}`) : null),
        h('td', {}, named('kind', c.kind)),
        h('td', {}, timeBoth(c.instant)),
        h('td', {}, h('span', { class: `phase phase-${c.phase}` }, named('phase', c.phase))),
        h('td', { class: 'num' }, fmtNumber(c.targets)),
        h('td', { class: 'num' }, fmtNumber(c.passed)),
        h('td', { class: `num ${c.failed ? 'bad strong' : ''}` }, fmtNumber(c.failed)),
        h('td', {}, may('cancel_test') && c.phase === 'planned' && c.kind !== 'live' ? cancelButton(c) : null),
      );
    const head = [t('col.campaign'), t('col.schedule'), t('col.kind'), t('col.instant'), t('col.phase'), [t('col.targets'), 'num'], [t('col.passed'), 'num'], [t('col.failed'), 'num'], ''];
    replace(this.parts.upcoming, upcoming.length ? table(head, upcoming.map(row), 'campaigns') : empty(t('soundings.none_upcoming')));
    replace(this.parts.index, past.length ? table(head, past.map(row), 'campaigns') : empty(t('soundings.none_past')));
  },
  // The chime is offered first: the gentlest signal is the default for a test.
  scheduleForm() {
    const at = h('input', { type: 'datetime-local', id: 'test-at', required: true });
    const kind = h('select', { id: 'test-kind' }, ['test', 'silent', 'chime'].map((k) => h('option', { value: k }, named('kind', k))));
    const pattern = h('select', { id: 'test-pattern' }, [...app.settings.patterns].sort((a, b) => (b === 'chime') - (a === 'chime')).map((p) => h('option', { value: p }, signalName(p))));
    const zones = zoneChecks('test-zone');
    return h(
      'section',
      { class: 'panel' },
      h('h2', {}, t('soundings.schedule_title')),
      h(
        'form',
        {
          class: 'action grid-form',
          onsubmit: submitter(async () => {
            const body = { at: new Date(at.value).toISOString(), kind: kind.value, zones: zones.selected(), sequence: [{ pattern: pattern.value }] };
            const created = await api('/api/soundings', { method: 'POST', body });
            toast(t('soundings.scheduled', { id: created.id }));
            want('soundings');
          }),
        },
        h('p', { class: 'hint' }, t('soundings.schedule_hint')),
        h('label', { for: 'test-at' }, t('field.at')),
        at,
        h('label', { for: 'test-kind' }, t('col.kind')),
        kind,
        h('label', { for: 'test-pattern' }, t('field.pattern')),
        pattern,
        h('fieldset', {}, h('legend', {}, t('field.zones_none_all')), zones.element),
        h('button', { type: 'submit' }, t('action.schedule')),
      ),
    );
  },
};

function cancelButton(c) {
  return h(
    'button',
    {
      type: 'button',
      class: 'small',
      onclick: async () => {
        const reason = await ask({
          title: t('soundings.cancel_title', { id: c.id }),
          field: { label: t('field.reason'), required: true },
          ok: t('action.cancel_sounding'),
        });
        if (!reason) return;
        try {
          await api(`/api/soundings/${c.id}/cancel`, { method: 'POST', body: { reason } });
          toast(t('soundings.cancelled', { id: c.id }));
          want('soundings');
        } catch (e) {
          toast(e.message, true);
        }
      },
    },
    t('action.cancel'),
  );
}

// Checkboxes of the zones the token acts in.
function zoneChecks(prefix) {
  const mine = app.me ? app.me.zones : [];
  const zones = zonePaths().filter((z) => !mine.length || mine.some((m) => z === m || z.startsWith(`${m}/`)));
  const boxes = zones.map((z, i) => {
    const box = h('input', { type: 'checkbox', value: z, id: `${prefix}-${i}` });
    return { z, box, el: h('label', { class: `check depth-${z.split('/').length}`, for: `${prefix}-${i}` }, box, zoneLabel(z)) };
  });
  // One line per zone with what is inside it (a district and its towns), cities on their own.
  const depth = (z) => z.split('/').length;
  const deepest = Math.max(...zones.map(depth), 1);
  const groupDepth = Math.max(1, deepest - 1);
  const groups = [];
  for (const b of boxes) {
    const d = depth(b.z);
    if (d <= groupDepth || !groups.length) groups.push([b]);
    else groups[groups.length - 1].push(b);
  }
  return {
    element: h('div', { class: 'zone-checks' }, groups.map((g) => h('div', { class: 'zone-group' }, g.map((b) => b.el)))),
    selected: () => boxes.filter((b) => b.box.checked).map((b) => b.z),
  };
}

// One campaign's report: failures first, by zone and reason; then coverage; then every siren.
VIEWS.report = {
  mount(main, id) {
    this.id = Number(id);
    this.body = h('div', { class: 'report' });
    replace(main, this.body);
    this.load();
  },
  async load() {
    try {
      this.report = await api(`/api/soundings/${this.id}`);
      this.render();
    } catch (e) {
      replace(this.body, h('h1', {}, t('report.title', { id: this.id })), empty(e.message));
    }
  },
  update(what, e) {
    if (what === 'soundings' || (what === 'event' && e && e.kind.startsWith('sounding'))) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), 600);
    }
  },
  render() {
    const r = this.report;
    const failed = r.sirens.filter((s) => s.result && s.result !== 'pass');
    const order = (s) => (s.result && s.result !== 'pass' ? 0 : !s.result ? 1 : 2);
    const sirens = r.sirens.slice().sort((a, b) => order(a) - order(b) || a.zone.localeCompare(b.zone) || a.siren.localeCompare(b.siren));
    const sequence = (r.sequence || []).map((st) => (st.pattern ? signalName(st.pattern) : t('report.pause', { s: st.pause_s }))).join(' → ');
    const failuresByZone = Object.entries(r.failures_by_zone || {});
    replace(
      this.body,
      h(
        'div',
        { class: 'report-head' },
        h('h1', {}, t('report.title', { id: r.id }), ' ', h('small', {}, r.schedule)),
        h(
          'div',
          { class: 'report-actions no-print' },
          h('button', { type: 'button', onclick: () => window.print() }, t('report.print')),
          h('button', { type: 'button', onclick: () => download(`/api/soundings/${r.id}.csv`, `sounding-${r.id}.csv`) }, t('report.csv')),
          may('cancel_test') && r.phase === 'planned' && r.kind !== 'live' ? cancelButton(r) : null,
        ),
      ),
      h(
        'dl',
        { class: 'facts report-facts' },
        [
          [t('col.kind'), named('kind', r.kind)],
          [t('col.phase'), h('span', { class: `phase phase-${r.phase}` }, named('phase', r.phase))],
          [t('col.instant'), timeBoth(r.instant)],
          [t('report.sequence'), sequence || '—'],
          [t('report.requested'), r.note || r.schedule],
          [t('col.targets'), fmtNumber(r.targets)],
          [t('report.result'), h('strong', { class: r.failed ? 'bad' : 'good' }, t('report.tally', { passed: r.passed, failed: r.failed, maint: r.in_maintenance, total: r.targets }))],
          r.skew_ms ? [t('report.skew'), t('report.skew_value', { p50: fmtNumber(r.skew_ms.p50, 1), p99: fmtNumber(r.skew_ms.p99, 1), max: fmtNumber(r.skew_ms.max, 1) })] : null,
        ]
          .filter(Boolean)
          .map(([k, v]) => h('div', { class: 'fact' }, h('dt', {}, k), h('dd', {}, v))),
      ),
      h(
        'section',
        { class: 'panel failures' },
        h('h2', {}, t('report.failures', { n: failed.length })),
        failuresByZone.length
          ? failuresByZone.map(([zone, reasons]) =>
              h(
                'div',
                { class: 'zone-failures' },
                h('h3', {}, zoneLabel(zone)),
                h(
                  'ul',
                  {},
                  Object.entries(reasons).map(([reason, ids]) => h('li', {}, h('strong', {}, named('result', reason)), `: `, ids.map((id, i) => [i ? ', ' : '', sirenLink(id)]))),
                ),
              ),
            )
          : h('p', { class: r.phase === 'done' ? 'all-good' : 'empty' }, r.phase === 'done' ? t('report.no_failures') : t('report.not_judged')),
      ),
      section(
        t('report.coverage'),
        r.achieved_coverage && r.achieved_coverage.length
          ? table(
              [t('col.zone'), [t('report.area_ratio'), 'num'], [t('report.population_ratio'), 'num']],
              r.achieved_coverage.map((z) => h('tr', {}, h('th', { scope: 'row' }, zoneLabel(z.zone)), h('td', { class: 'num' }, `${fmtNumber(z.area_ratio * 100, 1)}%`), h('td', { class: 'num' }, z.population_ratio === null ? '—' : `${fmtNumber(z.population_ratio * 100, 1)}%`))),
            )
          : empty(t('report.no_coverage')),
      ),
      section(
        t('report.every_siren'),
        table(
          [t('col.siren'), t('col.zone'), t('col.result'), [t('report.skew_ms'), 'num'], t('report.notes')],
          sirens.map((s) =>
            h(
              'tr',
              { class: s.result && s.result !== 'pass' ? 'row-fail' : '' },
              h('th', { scope: 'row' }, sirenLink(s.siren)),
              h('td', {}, zoneLabel(s.zone)),
              h('td', {}, s.maintenance ? h('span', { class: 'tag' }, t('overview.in_maintenance')) : resultTag(s.result)),
              h('td', { class: 'num' }, s.skew_ms === null ? '—' : fmtNumber(s.skew_ms, 1)),
              h('td', {}, [s.refused ? t('report.refused', { why: s.refused }) : null, s.clock_flagged ? t('report.clock_flagged') : null, s.start_uncertain ? t('report.start_uncertain') : null, s.maintenance].filter(Boolean).join('; ')),
            ),
          ),
          'report-sirens',
        ),
      ),
    );
  },
};

async function download(path, name) {
  try {
    const res = await api(path, { raw: true });
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    toast(e.message, true);
  }
}

// The LIVE warning desk. Visibly unlike anything about tests: red, named REAL, and a request
// needs its target typed back before it is sent.
VIEWS.warning = {
  title: () => t('nav.warning'),
  mount(main) {
    this.list = h('div');
    this.drawn = null;
    replace(
      main,
      h(
        'div',
        { class: 'warning-view' },
        h('div', { class: 'real-warning-head' }, h('h1', {}, t('warning.title')), h('p', {}, t('warning.explain'))),
        may('request_live') ? this.requestForm() : null,
        section(t('warning.activations'), this.list),
      ),
    );
    this.update('all');
  },
  update(what, e) {
    if (what === 'event') {
      if (e && (e.kind === 'sounding_report' || e.kind.startsWith('live') || e.kind === 'stop_complete')) this.watchSoon();
      return;
    }
    if (!['all', 'activations', 'soundings'].includes(what)) return;
    const list = app.activations.slice().sort((a, b) => b.id - a.id).slice(0, 50);
    // Redrawn only when something shown changed: a button must not be replaced under the
    // pointer of the person about to press it.
    const signature = JSON.stringify([lang, list, list.map((a) => ended(a))]);
    if (signature === this.drawn) return;
    this.drawn = signature;
    if (!list.length) {
      replace(this.list, empty(t('warning.none')));
      return;
    }
    replace(this.list, list.map((a) => this.card(a)));
    this.watchSoon();
  },
  // How each approved warning's sirens are doing, while one may still be sounding.
  watchSoon() {
    clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => this.watch(), 300);
  },
  async watch() {
    const watched = app.activations.filter((a) => a.state === 'approved').sort((a, b) => b.id - a.id).slice(0, 3);
    for (const a of watched) {
      const el = this.list.querySelector(`[data-activation="${a.id}"] .live-counts`);
      if (!el) continue;
      try {
        const view = await api(`/api/activations/${a.id}`);
        const order = ['sounding', 'armed', 'pending', 'sounded', 'done', 'failed', 'stopped'];
        replace(el, h('dt', {}, t('warning.progress')), h('dd', {}, order.filter((k) => view.counts[k]).map((k) => h('span', { class: `live-count lc-${k}` }, `${named('live_siren', k)} ${view.counts[k]}`))));
      } catch (_) {
        /* shown next time */
      }
    }
    if (watched.some((a) => !a.stopped && !a.false_alarm && !ended(a))) {
      clearTimeout(this.watchTimer);
      this.watchTimer = setTimeout(() => this.watch(), 3000);
    }
  },
  card(a) {
    const me = app.me ? app.me.name : '';
    const buttons = [];
    const live = !a.false_alarm && !a.stopped && !ended(a);
    if (a.state === 'requested' && may('approve_live')) {
      if (a.requested_by === me) {
        buttons.push(h('p', { class: 'hint' }, t('warning.own_request')));
      } else {
        buttons.push(h('button', { type: 'button', class: 'approve', onclick: () => this.approve(a) }, t('warning.approve')));
        buttons.push(h('button', { type: 'button', class: 'secondary', onclick: () => this.reasoned(a, 'reject') }, t('warning.reject')));
      }
    }
    if (a.state === 'approved' && live && may('stop')) buttons.push(stopButton([a]));
    if (a.state === 'approved' && !a.false_alarm && may('request_live')) {
      buttons.push(h('button', { type: 'button', class: 'secondary', onclick: () => this.reasoned(a, 'false-alarm') }, t('warning.false_alarm')));
    }
    return h(
      'article',
      { class: `activation activation-${a.state} ${live && a.state === 'approved' ? 'sounding' : ''}`, 'data-activation': a.id },
      h('h3', {}, `#${a.id} `, signalName(a.signal), ' ', liveState(a)),
      h(
        'dl',
        { class: 'facts' },
        [
          [t('warning.targets'), `${targetText(a)} · ${t('warning.n_sirens', { n: sirenCount(a) })}`],
          [t('field.reason'), a.reason],
          [t('warning.requested_by'), `${a.requested_by} · ${fmtTime(a.requested_at)}`],
          a.state === 'requested' ? [t('warning.expires'), fmtTime(a.expires)] : null,
          a.by ? [a.state === 'rejected' ? t('warning.rejected_by') : t('warning.approved_by'), `${a.by} · ${fmtTime(a.at)}${a.waived ? ` (${t('warning.waived')})` : ''}`] : null,
          a.sounds_at ? [t('warning.sounds_at'), timeBoth(a.sounds_at)] : null,
          a.campaign ? [t('col.campaign'), h('a', { href: `#/soundings/${a.campaign}` }, `#${a.campaign}`)] : null,
          a.stopped ? [t('warning.state_stopped'), a.stopped] : null,
          a.false_alarm ? [t('warning.state_false_alarm'), a.false_alarm] : null,
          a.cap_alert ? [t('warning.cap_alert'), a.cap_alert] : null,
        ]
          .filter(Boolean)
          .map(([k, v]) => h('div', { class: 'fact' }, h('dt', {}, k), h('dd', {}, v))),
        a.state === 'approved' ? h('div', { class: 'fact live-counts' }) : null,
      ),
      buttons.length ? h('div', { class: 'buttons' }, buttons) : null,
    );
  },
  async approve(a) {
    // The approver reads back what will sound before it does.
    const ok = await ask({
      title: t('warning.confirm_approve_title', { id: a.id }),
      message: t('warning.confirm_approve', { signal: signalName(a.signal), n: sirenCount(a), targets: targetText(a), by: a.requested_by, reason: a.reason }),
      ok: t('warning.approve'),
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/api/activations/${a.id}/approve`, { method: 'POST', body: {} });
      toast(t('warning.approved', { id: a.id }));
      want('activations');
    } catch (e) {
      toast(e.message, true);
    }
  },
  async reasoned(a, step) {
    const reject = step === 'reject';
    const reason = await ask({
      title: reject ? t('warning.reject_title', { id: a.id }) : t('warning.false_alarm_title', { id: a.id }),
      message: reject ? null : t('warning.false_alarm_explain'),
      field: { label: reject ? t('warning.reject_reason') : t('warning.false_alarm_reason'), required: false },
      ok: reject ? t('warning.reject') : t('warning.false_alarm'),
    });
    if (reason === null) return;
    try {
      await api(`/api/activations/${a.id}/${step}`, { method: 'POST', body: { reason } });
      toast(step === 'reject' ? t('warning.rejected', { id: a.id }) : t('warning.marked_false', { id: a.id }));
      want('activations');
    } catch (e) {
      toast(e.message, true);
    }
  },
  requestForm() {
    const zones = zoneChecks('live-zone');
    const signal = h('select', { id: 'live-signal', required: true }, h('option', { value: '' }, t('warning.choose_signal')), app.settings.live_signals.map((s) => h('option', { value: s }, signalName(s))));
    const reason = h('textarea', { id: 'live-reason', required: true, rows: '2', maxlength: '1000' });
    const confirmBox = h('input', { type: 'text', id: 'live-confirm', autocomplete: 'off', required: true, pattern: t('warning.confirm_word') });
    return h(
      'section',
      { class: 'panel danger' },
      h('h2', {}, t('warning.request_title')),
      h(
        'form',
        {
          class: 'action grid-form live-request',
          onsubmit: submitter(async (form) => {
            if (confirmBox.value.trim() !== t('warning.confirm_word')) throw new Error(t('warning.confirm_needed', { word: t('warning.confirm_word') }));
            const body = { zones: zones.selected(), signal: signal.value, reason: reason.value.trim() };
            const created = await api('/api/activations', { method: 'POST', body });
            toast(t('warning.requested', { id: created.id }));
            form.reset();
            want('activations');
          }),
        },
        h('p', { class: 'hint' }, t('warning.request_hint', { s: app.settings.approval_window_s })),
        h('fieldset', {}, h('legend', {}, t('field.zones_none_all')), zones.element),
        h('label', { for: 'live-signal' }, t('warning.signal')),
        signal,
        h('label', { for: 'live-reason' }, t('field.reason')),
        reason,
        h('label', { for: 'live-confirm' }, t('warning.confirm_label', { word: t('warning.confirm_word') })),
        confirmBox,
        h('button', { type: 'submit', class: 'danger' }, t('warning.request')),
      ),
    );
  },
};

// Events, filtered, following the log as it grows.
VIEWS.events = {
  title: () => t('nav.events'),
  mount(main) {
    const kinds = Object.keys(WORDS.en).filter((k) => k.startsWith('event.')).map((k) => k.slice(6));
    this.siren = h('input', { type: 'search', id: 'ev-siren', placeholder: t('events.siren_placeholder') });
    this.kind = h('select', { id: 'ev-kind' }, h('option', { value: '' }, t('events.every_kind')), kinds.map((k) => h('option', { value: k }, named('event', k))));
    this.rows = h('tbody');
    const reload = () => this.load();
    this.siren.addEventListener('change', reload);
    this.kind.addEventListener('change', reload);
    replace(
      main,
      section(
        t('nav.events'),
        h('div', { class: 'filters' }, h('label', { for: 'ev-siren' }, t('col.siren')), this.siren, h('label', { for: 'ev-kind' }, t('events.kind')), this.kind),
        h('table', { class: 'events' }, h('thead', {}, h('tr', {}, [t('col.at'), t('col.siren'), t('events.kind'), t('events.detail')].map((x) => h('th', { scope: 'col' }, x)))), this.rows),
      ),
    );
    this.load();
  },
  async load() {
    const q = new URLSearchParams({ limit: '300' });
    if (this.siren.value.trim()) q.set('siren', this.siren.value.trim());
    if (this.kind.value) q.set('kind', this.kind.value);
    try {
      const list = await api(`/api/events?${q}`);
      replace(this.rows, list.map((e) => this.row(e)));
    } catch (e) {
      toast(e.message, true);
    }
  },
  row(e) {
    return h('tr', { 'data-event': e.id }, h('td', {}, fmtTime(e.at)), h('td', {}, e.siren ? sirenLink(e.siren) : '—'), h('td', {}, named('event', e.kind)), h('td', {}, eventDetail(e)));
  },
  update(what, e) {
    if (what !== 'event' || !e) return;
    if (this.siren.value.trim() && e.siren !== this.siren.value.trim()) return;
    if (this.kind.value && e.kind !== this.kind.value) return;
    this.rows.prepend(this.row(e));
    while (this.rows.childElementCount > 500) this.rows.lastElementChild.remove();
  },
};

// A state change reads in the page's language; other details are the daemon's own words.
function eventDetail(e) {
  if (e.kind === 'state') {
    const m = /^([a-z_]+) -> ([a-z_]+)(?: \(([a-z_]+)\))?/.exec(e.detail || '');
    if (m) return h('span', {}, badge(m[1]), ' → ', badge(m[2]), m[3] ? ` (${named('cause', m[3])})` : '');
  }
  if (e.kind === 'fault_raised' || e.kind === 'fault_cleared') return named('fault', e.detail);
  return e.detail;
}

// The audit log (administrators), filtered by who, what or the outcome as one types.
VIEWS.audit = {
  title: () => t('nav.audit'),
  mount(main) {
    this.body = h('div');
    this.list = null;
    this.text = h('input', { type: 'search', id: 'audit-text', placeholder: t('audit.filter_placeholder') });
    this.refused = h('input', { type: 'checkbox', id: 'audit-refused' });
    const draw = () => this.draw();
    this.text.addEventListener('input', draw);
    this.refused.addEventListener('change', draw);
    replace(
      main,
      section(
        t('nav.audit'),
        h('div', { class: 'filters' }, h('label', { for: 'audit-text' }, t('audit.filter')), this.text, h('label', { class: 'check', for: 'audit-refused' }, this.refused, t('audit.only_refused'))),
        this.body,
      ),
    );
    this.load();
  },
  async load() {
    try {
      this.list = await api('/api/audit');
      this.draw();
    } catch (e) {
      replace(this.body, empty(e.message));
    }
  },
  draw() {
    if (!this.list) return;
    const needle = this.text.value.trim().toLowerCase();
    const match = (a) => [a.actor, a.action, a.target, a.detail, a.client].some((v) => String(v).toLowerCase().includes(needle));
    const shown = this.list.filter((a) => (!this.refused.checked || !a.allowed) && (!needle || match(a)));
    replace(
      this.body,
      table(
        [t('col.at'), t('audit.actor'), t('audit.action'), t('audit.target'), t('audit.allowed'), t('events.detail'), t('audit.client')],
        shown.map((a) => h('tr', { class: a.allowed ? '' : 'row-fail' }, h('td', {}, fmtTime(a.at)), h('td', {}, a.actor), h('td', {}, a.action), h('td', {}, a.target), h('td', {}, a.allowed ? t('audit.yes') : t('audit.refused')), h('td', {}, a.detail), h('td', {}, a.client))),
        'audit',
      ),
    );
  },
  update(what, e) {
    // Read again after what people do (each read is itself audited, so not after every
    // event the fleet makes).
    const byPeople = /^(acknowledged|maintenance_|live_|stop_|sounding_cancelled|counters_resynced|cap_alert)/;
    if (what === 'event' && e && byPeople.test(e.kind)) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), 1000);
    }
  },
};

// Login: the token is kept for this browser session only.
VIEWS.login = {
  title: () => t('header.login'),
  mount(main) {
    const token = h('input', { type: 'password', id: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
    replace(
      main,
      h(
        'section',
        { class: 'panel login' },
        h('h1', {}, t('login.title')),
        h('p', {}, t('login.explain')),
        h(
          'form',
          {
            class: 'action',
            onsubmit: submitter(async () => {
              const presented = token.value.trim();
              const res = await fetch('/api/me', { headers: { Authorization: `Bearer ${presented}` } });
              if (!res.ok) throw new Error(t('login.refused'));
              app.token = presented;
              sessionStorage.setItem('sirend.token', presented);
              location.hash = '#/overview';
              await start();
            }),
          },
          h('label', { for: 'token' }, t('login.token')),
          token,
          h('button', { type: 'submit' }, t('header.login')),
        ),
      ),
    );
  },
  update() {},
};

// ---- running --------------------------------------------------------------------------------

function show() {
  const { name, arg } = route();
  const view = VIEWS[name] && name !== 'report' ? VIEWS[name] : VIEWS.overview;
  const main = document.getElementById('view');
  app.listeners.clear();
  app.view = view;
  document.title = `${typeof view.title === 'function' ? view.title(arg) : ''} · ${t('app.name')}`;
  view.mount(main, arg);
  app.listeners.add((what, e) => view.update(what, e));
  app.listeners.add((what) => {
    if (what === 'activations' || what === 'soundings') renderLiveBanner();
  });
  renderHeader();
  main.focus({ preventScroll: true });
}

function renderAll() {
  document.documentElement.lang = lang;
  renderHeader();
  renderLiveBanner();
  show();
}

async function start() {
  document.documentElement.lang = lang;
  const main = document.getElementById('view');
  try {
    app.me = await api('/api/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      app.token = '';
      sessionStorage.removeItem('sirend.token');
      app.me = null;
    } else {
      replace(main, empty(e.message));
      return;
    }
  }
  app.settings = await api('/api/console');
  if (!app.me || !app.me.permissions.includes('read')) {
    app.me = app.me || { name: 'anonymous', permissions: [], zones: [] };
    renderHeader();
    VIEWS.login.mount(main);
    return;
  }
  if (app.me.zones.length && !app.zoneFilter && app.me.zones.length === 1) app.zoneFilter = app.me.zones[0];
  follow();
  followLeadership();
  try {
    const zones = api('/api/zones.geojson').then((z) => (app.zones = z));
    await Promise.all([loadSirens(), loadSoundings(), loadActivations(), loadMaintenance(), zones]);
  } catch (e) {
    replace(main, empty(e.message));
    return;
  }
  renderAll();
  loadCoverage().catch((e) => toast(e.message, true));
  document.body.dataset.ready = 'true';
  stats.readyMs = performance.now();
}

window.addEventListener('hashchange', () => {
  if (app.settings) show();
});
// Times shown as "5 minutes ago" stay true.
setInterval(() => changed('clock'), 30000);
start();
