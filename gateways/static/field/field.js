/*
 * The field officer's app (/field): plain JS, no build step, no third-party code.
 *
 * - Every action (report, step, note, status) goes into the IndexedDB outbox first, with its idempotency key
 *   (report_id, note_id, or the step's incident/team/action), photos as blobs; the outbox is sent in order
 *   when online (the `online` event, and retries with backoff). Photos are uploaded before the report or step
 *   that names them. A refusal (409 reassigned meanwhile, 4xx) is kept and shown with the server's reason.
 * - The session token is kept in localStorage (it survives closing the browser); a 401 asks for the password
 *   again and keeps the outbox.
 * - Text from the server is only ever inserted as text (textContent, text nodes): never innerHTML of data.
 */
'use strict';

const API = '/api/v1';
const MAX_PHOTOS = 6;
const RETRY_MAX_MS = 60000;
const POLL_MS = 20000;

// ---------------------------------------------------------------- small helpers
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** An element with attributes and children; strings become text nodes (never parsed as HTML). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function newKey(prefix) {
  const rnd = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}-${Date.now().toString(36)}-${rnd[0].toString(36)}${rnd[1].toString(36)}`;
}

// ---------------------------------------------------------------- labels (zh-CN by default)
let LANG = 'zh-CN';
let LABELS = {};
let labelsLoaded = false;
let refusedEarly = null; // why the token was refused before the labels were loaded (needPassword waits for them)

function t(key, vars) {
  let text = LABELS[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

async function loadLabels(lang, early) {
  const res = await (early || fetch(`/field/assets/${lang}.json`));
  if (!res.ok) throw new Error(`labels ${lang}: HTTP ${res.status}`);
  LABELS = await res.json();
  labelsLoaded = true;
  LANG = lang;
  document.documentElement.lang = lang;
  // Written only where the text differs: the page comes with the zh-CN labels, and a node written with the
  // same text is laid out again (at boot, the header and the tabs that the first layout has just measured).
  const put = (node, key, text) => { if (node[key] !== text) node[key] = text; };
  for (const node of $$('[data-i18n]')) put(node, 'textContent', t(node.dataset.i18n));
  for (const node of $$('[data-i18n-placeholder]')) put(node, 'placeholder', t(node.dataset.i18nPlaceholder));
  put($('#lang'), 'textContent', lang === 'zh-CN' ? 'EN' : '中文');
  put(document, 'title', t('app.title'));
}

function named(item) {
  if (!item) return '';
  return (LANG === 'en' ? item.name_en : item.name) || item.name || item.id || '';
}

// ---------------------------------------------------------------- IndexedDB: the outbox and the last lists
const db = (() => {
  let opening = null;
  function open() {
    // Signed in, the page's head opened it already (index.html, where the stores are made).
    if (!opening) opening = window.fieldEarly.db || window.fieldEarly.openDb();
    return opening;
  }
  async function run(store, mode, fn) {
    const d = await open();
    return new Promise((resolve, reject) => {
      const tx = d.transaction(store, mode);
      const result = fn(tx.objectStore(store));
      tx.oncomplete = () => resolve(result && 'result' in result ? result.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }
  return {
    all: (store) => run(store, 'readonly', (s) => s.getAll()),
    get: (store, key) => run(store, 'readonly', (s) => s.get(key)),
    put: (store, value, key) => run(store, 'readwrite', (s) => (key === undefined ? s.put(value) : s.put(value, key))),
    del: (store, key) => run(store, 'readwrite', (s) => s.delete(key)),
    clear: (store) => run(store, 'readwrite', (s) => s.clear()),
  };
})();

// ---------------------------------------------------------------- session and API
const session = {
  get token() { return localStorage.getItem('field.token'); },
  get account() {
    try { return JSON.parse(localStorage.getItem('field.account') || 'null'); } catch { return null; }
  },
  save(token, account) {
    localStorage.setItem('field.token', token);
    localStorage.setItem('field.account', JSON.stringify(account));
  },
  forget() {
    localStorage.removeItem('field.token');
  },
};

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function detailText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== 'body').join('.')}: ${d.msg}`).join('; ');
  }
  return `HTTP ${status}`;
}

/** A request with the officer's token. Throws ApiError for an answer that is not 2xx, TypeError offline.
 *  `early`: the answer of the same request the page's head started before this script arrived. */
async function api(method, path, body, { form, early } = {}) {
  const headers = { accept: 'application/json' };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await (early || fetch(path.startsWith('/') ? path : `${API}/${path}`, { method, headers, body: payload }));
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (res.status === 401) {
    needPassword(detailText(data, 401));
    throw new ApiError(401, detailText(data, 401));
  }
  if (!res.ok) throw new ApiError(res.status, detailText(data, res.status));
  return data;
}

// ---------------------------------------------------------------- state
const state = {
  view: 'tasks',
  scope: 'mine',
  tasks: [],
  taskIds: null, // the ids seen by the last list, to tell a new task from a known one
  catalogue: [],
  zones: [],
  bbox: null,
  current: null, // the incident shown in the task view
  place: null, // a place the report form is tied to
  photos: [], // the report form's photos (File objects)
  position: null, // {lat, lon, accuracy_m} from the phone
  outbox: [],
  lastSeq: Number(localStorage.getItem('field.seq') || 0),
};

function toast(text) {
  const node = $('#toast');
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 3000);
}

// ---------------------------------------------------------------- views
function go(view, { push = true } = {}) {
  if (!session.token && view !== 'signin') view = 'signin';
  state.view = view;
  for (const section of $$('.view')) section.hidden = section.id !== `view-${view}`;
  $('#nav').hidden = view === 'signin';
  for (const button of $$('#nav button')) {
    if (button.dataset.go === view) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  if (push && view !== 'place' && location.pathname !== '/field') history.pushState(null, '', '/field');
  window.scrollTo(0, 0);
  if (view === 'tasks') redrawSoon(); // rows drawn while the view was hidden assumed it at the top
  if (view === 'me') renderMe();
  if (view === 'report') prepareReport();
}

function needPassword(why) {
  session.forget();
  if (!labelsLoaded) { refusedEarly = why; return; } // asked while the labels load: start() asks once they are here
  stopLive();
  const form = $('#signin-form');
  const account = session.account;
  if (account && account.name) form.username.value = account.name;
  const note = $('#signin-why');
  note.textContent = t('signin.again', { why });
  note.hidden = false;
  go('signin');
}

// ---------------------------------------------------------------- sign in / out
async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $('#signin-error').textContent = '';
  const body = new URLSearchParams({ username: form.username.value.trim(), password: form.password.value });
  try {
    const res = await fetch(`${API}/auth/token`, { method: 'POST', body });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, detailText(data, res.status));
    if (data.account.role !== 'field_officer') {
      $('#signin-error').textContent = t('signin.not_officer', { role: data.account.role });
      return;
    }
    session.save(data.access_token, data.account);
    form.password.value = '';
    $('#signin-why').hidden = true;
    await start();
  } catch (err) {
    $('#signin-error').textContent = err instanceof ApiError ? err.detail : t('net.offline_signin');
  }
}

async function signOut() {
  if (state.outbox.some((i) => i.state !== 'refused') && !confirm(t('me.signout_pending', { n: state.outbox.length }))) {
    return;
  }
  try { await api('POST', 'auth/logout'); } catch { /* offline or already revoked: forget it here anyway */ }
  session.forget();
  localStorage.removeItem('field.account');
  localStorage.removeItem('field.seq');
  await db.clear('kv');
  if ('caches' in window) await caches.delete('field-data');
  stopLive();
  state.tasks = [];
  state.taskIds = null;
  go('signin');
}

// ---------------------------------------------------------------- reference data: catalogue and zones
/** [[key, data]] of the catalogue and the zones, asked together; offline, the copies kept last time. */
function fetchReference(early = {}) {
  return Promise.all([['catalogue', 'rules/catalogue'], ['zones', 'rules/zones']].map(async ([key, path]) => {
    try {
      const data = await api('GET', path, undefined, { early: early[key] });
      db.put('kv', data, key).catch(() => {});
      return [key, data];
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return [key, null];
      return [key, await db.get('kv', key)];
    }
  })).then((pairs) => pairs.filter(([, data]) => data));
}

function applyReference(key, data) {
  if (key === 'catalogue') state.catalogue = data.data || [];
  if (key === 'zones') {
    state.zones = (data.features || []).map((f) => ({
      id: f.id,
      name: f.properties.name,
      name_en: f.properties.name_en,
      lon: f.geometry.type === 'Point' ? f.geometry.coordinates[0] : f.geometry.coordinates[0][0][0],
      lat: f.geometry.type === 'Point' ? f.geometry.coordinates[1] : f.geometry.coordinates[0][0][1],
    }));
    drawZoneSymbol();
  }
  // The report form's lists are filled when the form is opened (prepareReport), not while the first screen is
  // drawn: the catalogue is a few dozen <option>s that nobody sees until then.
  if (state.view === 'report') fillSelects();
}

/** The township's zones, drawn once into an SVG <symbol> that every small map <use>s. */
function project(lon, lat) {
  const b = state.bbox;
  if (!b) return [50, 30];
  const [x0, y0, x1, y1] = b;
  return [8 + ((lon - x0) / Math.max(x1 - x0, 1e-9)) * 70, 52 - ((lat - y0) / Math.max(y1 - y0, 1e-9)) * 44];
}

function drawZoneSymbol() {
  const zs = state.zones;
  if (!zs.length) return;
  const lons = zs.map((z) => z.lon);
  const lats = zs.map((z) => z.lat);
  state.bbox = [Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats)];
  const symbol = $('#zmap');
  symbol.replaceChildren(...zs.map((z) => {
    const [x, y] = project(z.lon, z.lat);
    // Styled here, not from field.css: a <use>d symbol's content does not match selectors of the page.
    return svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 4, fill: '#c8d6e6', stroke: '#8fa7c2', 'stroke-width': 0.4 });
  }));
}

function smallMap(incident, wide) {
  let where = null;
  if (incident.location) where = project(incident.location.lon, incident.location.lat);
  else if (incident.zone) {
    const zone = state.zones.find((z) => z.id === incident.zone);
    if (zone) where = project(zone.lon, zone.lat);
  }
  const map = svg('svg', { class: wide ? 'map wide' : 'map', viewBox: '0 0 100 60', role: 'img',
    'aria-label': zoneName(incident.zone) || '' });
  map.append(svg('use', { href: '#zmap' }));
  if (wide) {
    for (const z of state.zones) {
      const [x, y] = project(z.lon, z.lat);
      // Beside the zone on the side with room (a zone in the right half has its name to its left), without the
      // name's bracketed note, so that it stays inside a 390 px phone's map.
      const right = x > 50;
      map.append(svg('text', { x: (right ? x - 4.5 : x + 4.5).toFixed(1), y: (y + 1).toFixed(1),
        'text-anchor': right ? 'end' : 'start' }, named(z).replace(/\s*[(（][^()（）]*[)）]\s*$/, '')));
    }
  }
  if (where) map.append(svg('circle', { class: 'here', cx: where[0].toFixed(1), cy: where[1].toFixed(1), r: 2.6 }));
  return map;
}

function zoneName(id) {
  const zone = state.zones.find((z) => z.id === id);
  return zone ? named(zone) : id || '';
}

function categoryName(id) {
  const entry = state.catalogue.find((c) => c.id === id);
  return entry ? named(entry) : id || t('report.category_auto');
}

function fillSelects() {
  const form = $('#report-form');
  const cat = form.category;
  const keep = cat.value;
  cat.replaceChildren(el('option', { value: '' }, t('report.category_auto')),
    ...state.catalogue.map((c) => el('option', { value: c.id }, named(c))));
  cat.value = keep;
  const zone = form.zone;
  const keepZone = zone.value;
  zone.replaceChildren(el('option', { value: '' }, t('report.zone_none')),
    ...state.zones.map((z) => el('option', { value: z.id }, named(z))));
  zone.value = keepZone;
}

// ---------------------------------------------------------------- tasks
function myAssignment(incident) {
  // A task of the list is a summary (GET /me/tasks): its part is its `task`; an incident read whole has it in full.
  if (incident.task) return (incident.assignments || []).find((a) => a.team === incident.task.team) || incident.task;
  const me = session.account && session.account.officer_id;
  return incident.assignments.find((a) => a.officer === me && !['resolved', 'returned', 'cancelled'].includes(a.state))
    || incident.assignments.find((a) => a.officer === me)
    || incident.assignments.find((a) => !['resolved', 'returned', 'cancelled'].includes(a.state))
    || incident.assignments[0];
}

/** The team's name in the page's language (from the task list's summary), else its id. */
function teamName(incident, part) {
  const task = incident.task;
  if (!task || task.team !== part.team || !task.team_name) return part.team;
  return LANG === 'en' ? task.team_name_en : task.team_name;
}

/** The deadline that runs now for the officer's part: the first pending one (ack, then arrive, then resolve). */
function runningDeadline(incident) {
  if (incident.task) return incident.task.deadline; // the server's: the earliest pending one of the task's part
  const part = myAssignment(incident);
  if (!part) return null;
  const order = { ack: 0, arrive: 1, resolve: 2 };
  const pending = part.deadlines.filter((d) => d.state === 'pending').sort((a, b) => order[a.kind] - order[b.kind]);
  return pending[0] || null;
}

/** The most urgent first, as the server orders them: priority (1 first), then the running deadline, then id. */
function sortTasks(tasks) {
  // Each deadline parsed once, not twice per comparison (200 tasks: ~3,000 parses less while the list opens).
  const due = new Map(tasks.map((i) => { const d = runningDeadline(i); return [i, d ? Date.parse(d.due_at) : Infinity]; }));
  return tasks.slice().sort((a, b) => a.priority - b.priority || due.get(a) - due.get(b) || a.id - b.id);
}

async function loadTasks({ announce = true, draw = true } = {}) {
  await takeAnswer(await fetchTasks(), { announce, draw });
}

/** The list's answer ({data, kept}), or the copy kept last time when offline (`kept`: when it was taken). */
async function fetchTasks(early) {
  const key = `tasks.${state.scope}`;
  try {
    const data = await api('GET', `me/tasks?scope=${state.scope}`, undefined, { early });
    db.put('kv', { at: new Date().toISOString(), data }, key).catch(() => {});
    return { data, kept: null };
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    const kept = await db.get('kv', key);
    return kept ? { data: kept.data, kept: kept.at } : null;
  }
}

async function takeAnswer(answer, { announce = true, draw = true } = {}) {
  if (!answer) return;
  const { data, kept } = answer;
  const stale = $('#tasks-stale');
  stale.hidden = !kept;
  if (kept) stale.textContent = t('tasks.stale', { at: new Date(kept).toLocaleTimeString(LANG) });
  const tasks = data.data || [];
  if (!state.lastSeq && typeof data.seq === 'number') rememberSeq(data.seq); // the feed resumes from here
  takeTasks(tasks, { announce, draw });
}

/** The list becomes `tasks` (summaries): a new one of mine rings, the open task is read again if it changed. */
function takeTasks(tasks, { announce = true, draw = true } = {}) {
  if (state.scope === 'mine') {
    const ids = new Set(tasks.map((i) => i.id));
    if (announce && state.taskIds && [...ids].some((id) => !state.taskIds.has(id))) alertNewTask();
    state.taskIds = ids;
  }
  state.tasks = sortTasks(tasks);
  if (draw) renderTasks();
  if (state.current && state.view === 'task') {
    // A resolved or returned part leaves the list: the task shown is then read again on its own.
    const fresh = tasks.find((i) => i.id === state.current.id);
    if (!fresh || fresh.version !== state.current.version) showTask(state.current.id, { quiet: true });
  }
}

function pendingFor(incidentId) {
  return state.outbox.filter((i) => i.incident_id === incidentId && i.state !== 'refused');
}

/** The task list draws only the rows on screen and a few either side (windowing): every row has the same
 *  height (ROW_PX, field.css `#task-list > li`), the list is as tall as all its rows, and each row is placed at
 *  its index times ROW_PX. Opening the app with 200 tasks builds a dozen rows, not 200, and scrolling adds a
 *  row as it comes into view and drops one that left: the page keeps the same few dozen elements. */
const ROW_PX = 136; // a row of 128 px (field.css) and 8 px to the next
const OVERDRAW = 4; // rows drawn beyond each edge of the screen, so a fast flick does not show an empty gap
const rows = { drawn: new Map(), frame: 0 }; // index in state.tasks -> its <li>; the animation frame asked for

function renderTasks() {
  const list = $('#task-list');
  list.style.height = `${state.tasks.length * ROW_PX}px`;
  list.dataset.count = String(state.tasks.length);
  rows.drawn.clear();
  list.replaceChildren();
  $('#tasks-empty').hidden = state.tasks.length > 0;
  drawRows();
}

/** The rows in view (and OVERDRAW either side) are in the list, the others not. Reads the list's position
 *  first and writes after, so it forces no layout of its own (in a scroll frame the layout is clean). */
function drawRows() {
  rows.frame = 0;
  const list = $('#task-list');
  const top = list.getBoundingClientRect().top; // 0 while the view is hidden: the first screenful is drawn
  const n = state.tasks.length;
  const first = Math.max(0, Math.floor(-top / ROW_PX) - OVERDRAW);
  const last = Math.min(n - 1, Math.ceil((window.innerHeight - top) / ROW_PX) + OVERDRAW);
  for (const [i, li] of rows.drawn) {
    if (i < first || i > last) { li.remove(); rows.drawn.delete(i); }
  }
  const now = Date.now();
  const before = [];
  const after = [];
  const drawnFirst = rows.drawn.size ? Math.min(...rows.drawn.keys()) : Infinity;
  for (let i = first; i <= last; i++) {
    if (rows.drawn.has(i)) continue;
    const li = taskRow(state.tasks[i], i, now);
    rows.drawn.set(i, li);
    (i < drawnFirst ? before : after).push(li);
  }
  if (before.length) list.prepend(...before); // the document's order stays the list's order
  if (after.length) list.append(...after);
}

function redrawSoon() {
  if (!rows.frame && state.view === 'tasks') rows.frame = requestAnimationFrame(drawRows);
}

function taskRow(incident, index, now) {
  const part = myAssignment(incident);
  const deadline = runningDeadline(incident);
  const waiting = pendingFor(incident.id);
  const due = deadline ? el('span', { class: 'due', dataset: { due: deadline.due_at, kind: deadline.kind } }) : null;
  if (due) tickOne(due, now);
  const li = el('li', {},
    el('button', { class: 'task', type: 'button', dataset: { id: incident.id }, onclick: () => showTask(incident.id) },
      el('div', {},
        el('div', { class: 'desc' }, incident.description),
        el('div', { class: 'meta' }, `#${incident.id} · ${categoryName(incident.category)} · ${zoneName(incident.zone)}`),
        el('div', { class: 'meta' }, part ? `${t(`unit.${part.state}`)} · ${teamName(incident, part)}` : t(`status.${incident.status}`)),
        el('div', { class: 'foot' }, due,
          waiting.length ? el('span', { class: 'pending' }, t('outbox.waiting_n', { n: waiting.length })) : null)),
      smallMap(incident, false)));
  li.style.transform = `translateY(${index * ROW_PX}px)`;
  return li;
}

/** Each second, the countdowns drawn (the list's rows in view and the task shown: a dozen or so) are written;
 *  a row's text change is laid out inside its row only (`contain: strict`). */
function tick() {
  const now = Date.now();
  for (const li of rows.drawn.values()) {
    const node = li.querySelector('[data-due]');
    if (node) tickOne(node, now);
  }
  for (const node of $('#task-detail').querySelectorAll('[data-due]')) tickOne(node, now);
}

function tickOne(node, now) {
  const left = Math.round((Date.parse(node.dataset.due) - now) / 1000);
  const abs = Math.abs(left);
  const h = Math.floor(abs / 3600);
  const m = Math.floor((abs % 3600) / 60);
  const s = abs % 60;
  const clock = `${h ? `${h}:` : ''}${String(m).padStart(h ? 2 : 1, '0')}:${String(s).padStart(2, '0')}`;
  const kind = t(`kind.${node.dataset.kind}`);
  const text = left >= 0 ? t('due.left', { kind, clock }) : t('due.late', { kind, clock });
  if (node.textContent !== text) node.textContent = text;
  const late = String(left < 0);
  const soon = String(left >= 0 && left < 120);
  if (node.dataset.late !== late) node.dataset.late = late;
  if (node.dataset.soon !== soon) node.dataset.soon = soon;
}

// ---------------------------------------------------------------- one task
const NEXT = {
  dispatched: ['acknowledge'],
  acknowledged: ['en-route', 'on-scene', 'resolve'],
  en_route: ['on-scene', 'resolve'],
  on_scene: ['resolve'],
};

async function showTask(id, { quiet = false } = {}) {
  let incident = state.tasks.find((i) => i.id === id) || (state.current && state.current.id === id ? state.current : null);
  const task = incident && incident.task; // which part is the officer's (or its team's): from the task list
  try {
    incident = await api('GET', `incidents/${id}`);
    if (task) incident.task = task;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    if (err instanceof ApiError && !incident) { toast(err.detail); return; }
  }
  if (!incident) return;
  state.current = incident;
  renderTask(incident);
  if (!quiet) go('task');
}

function renderTask(incident) {
  const part = myAssignment(incident);
  const deadline = runningDeadline(incident);
  const waiting = pendingFor(incident.id);
  const steps = el('div', { class: 'steps' });
  const me = session.account && session.account.officer_id;
  const mine = incident.task ? incident.task.mine !== false : Boolean(part && part.officer === me);
  if (part && !mine) steps.append(el('p', { class: 'muted' }, t('task.held_by', { officer: part.officer || part.team })));
  if (part && mine) {
    const queued = new Set(waiting.map((i) => i.action));
    const next = NEXT[part.state] || [];
    for (const action of next) {
      if (action === 'resolve') continue;
      steps.append(el('button', {
        class: 'primary big', type: 'button', dataset: { action }, disabled: queued.has(action),
        onclick: (e) => { e.currentTarget.disabled = true; step(incident, part.team, action); },
      }, t(`action.${action}`)));
    }
    if (next.includes('resolve')) steps.append(resolveForm(incident, part, queued.has('resolve')));
    if (NEXT[part.state]) steps.append(returnForm(incident, part, queued.has('return')));
  }
  const timeline = (incident.timeline || []).slice(-8).reverse();
  const detail = el('div', { class: 'card' },
    el('h2', { class: 'desc' }, incident.description),
    el('dl', { class: 'kv' },
      el('dt', {}, t('task.id')), el('dd', {}, `#${incident.id}`),
      el('dt', {}, t('report.category')), el('dd', {}, categoryName(incident.category)),
      el('dt', {}, t('report.zone_short')), el('dd', {}, zoneName(incident.zone)),
      el('dt', {}, t('task.state')), el('dd', { id: 'task-state' }, part ? t(`unit.${part.state}`) : t(`status.${incident.status}`)),
      el('dt', {}, t('task.team')), el('dd', {}, part ? teamName(incident, part) : ''),
      el('dt', {}, t('task.priority')), el('dd', {}, String(incident.priority)),
      ...(incident.reporter ? [el('dt', {}, t('task.reporter')), el('dd', {}, incident.reporter)] : [])),
    deadline ? el('p', { class: 'due', dataset: { due: deadline.due_at, kind: deadline.kind } }) : null,
    smallMap(incident, true),
    waiting.length ? el('p', { class: 'pending', id: 'task-pending' },
      t('outbox.waiting_n', { n: waiting.length })) : null);
  const notes = timeline.length ? el('div', { class: 'card' }, el('h2', {}, t('task.timeline')),
    el('ul', { class: 'list timeline' }, ...timeline.map((e) => el('li', {},
      `${new Date(Date.parse(e.data.at || e.data.recorded_at || Date.now())).toLocaleTimeString(LANG)} ${t(`event.${e.type}`)} `,
      e.data.text ? el('span', { class: 'note-text' }, e.data.text) : null)))) : null;
  const box = $('#task-detail');
  box.replaceChildren(detail, steps, noteForm(incident), notes || '');
  for (const node of box.querySelectorAll('[data-due]')) tickOne(node, Date.now());
}

function photoPicker(store, thumbs) {
  const input = el('input', { type: 'file', accept: 'image/*', capture: 'environment', multiple: true });
  input.addEventListener('change', () => {
    for (const file of input.files) if (store.length < MAX_PHOTOS) store.push(file);
    input.value = '';
    drawThumbs(store, thumbs);
  });
  return el('label', { class: 'photo-pick' }, el('span', {}, t('report.photos')), input);
}

function drawThumbs(store, box) {
  for (const img of $$('img', box)) URL.revokeObjectURL(img.src);
  box.replaceChildren(...store.map((file, i) => el('figure', {},
    el('img', { src: URL.createObjectURL(file), alt: file.name }),
    el('button', { type: 'button', 'aria-label': t('report.remove_photo'),
      onclick: () => { store.splice(i, 1); drawThumbs(store, box); } }, '×'))));
}

function resolveForm(incident, part, queued) {
  const photos = [];
  const thumbs = el('div', { class: 'thumbs' });
  const note = el('textarea', { name: 'note', rows: 2, placeholder: t('task.resolve_note') });
  const form = el('form', { class: 'card form', id: 'resolve-form' },
    el('label', {}, el('span', {}, t('task.resolve_note')), note),
    photoPicker(photos, thumbs), thumbs,
    el('button', { class: 'primary big', type: 'submit', dataset: { action: 'resolve' }, disabled: queued },
      t('action.resolve')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    form.querySelector('button[type=submit]').disabled = true;
    step(incident, part.team, 'resolve', { note: note.value.trim() || undefined, photos: photos.slice() });
  });
  return form;
}

function returnForm(incident, part, queued) {
  const reason = el('input', { name: 'reason', placeholder: t('task.return_reason'), required: true });
  const form = el('form', { class: 'form inline', id: 'return-form' }, reason,
    el('button', { class: 'danger', type: 'submit', disabled: queued }, t('action.return')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!reason.value.trim()) return;
    form.querySelector('button').disabled = true;
    step(incident, part.team, 'return', { reason: reason.value.trim() });
  });
  return el('details', { class: 'card' }, el('summary', {}, t('task.return_title')), form);
}

function noteForm(incident) {
  const text = el('textarea', { name: 'note', rows: 2, required: true });
  const form = el('form', { class: 'card form', id: 'note-form' },
    el('label', {}, el('span', {}, t('task.note')), text),
    el('button', { class: 'big', type: 'submit' }, t('task.add_note')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!text.value.trim()) return;
    const noteId = newKey('note');
    await enqueue({ key: `note:${noteId}`, kind: 'note', incident_id: incident.id,
      label: t('outbox.note', { id: incident.id }), body: { text: text.value.trim(), note_id: noteId }, photos: [] });
    text.value = '';
  });
  return form;
}

/** A step goes into the outbox under its key: a second tap (or a retry) finds it there and adds nothing. */
async function step(incident, team, action, extra = {}) {
  const body = {};
  if (extra.reason) body.reason = extra.reason;
  if (extra.note) body.note = extra.note;
  await enqueue({
    key: `step:${incident.id}:${team}:${action}`, kind: 'step', incident_id: incident.id, team, action,
    label: t('outbox.step', { id: incident.id, action: t(`action.${action}`) }), body,
    photos: (extra.photos || []).map(photoRecord),
  });
}

// ---------------------------------------------------------------- report a matter
let classifyTimer = null;
let classifySeq = 0;

function prepareReport() {
  const form = $('#report-form');
  fillSelects();
  const tag = $('#report-place');
  if (state.place) {
    tag.textContent = t('report.at_place', { name: state.place.name || state.place.code, code: state.place.code });
    tag.hidden = false;
    if (state.place.zone && !form.zone.value) form.zone.value = state.place.zone;
  } else tag.hidden = true;
}

function onDescription() {
  clearTimeout(classifyTimer);
  const text = $('#report-form').description.value.trim();
  if (!text || !navigator.onLine) { $('#report-guess').replaceChildren(); return; }
  classifyTimer = setTimeout(() => classify(text), 350);
}

/** The categories the table's keywords would choose, asked of the server once the typing pauses. */
async function classify(text) {
  const mine = ++classifySeq;
  let data;
  try {
    data = await api('GET', `rules/classify?description=${encodeURIComponent(text)}`);
  } catch { return; }
  if (mine !== classifySeq) return; // an answer to an older text
  const form = $('#report-form');
  const box = $('#report-guess');
  box.replaceChildren(...(data.ranking || []).map((r, i) => el('button', {
    type: 'button', dataset: { category: r.category },
    'aria-pressed': String(form.category.value === r.category || (!form.category.value && i === 0 && data.category === r.category)),
    title: t('report.guess_why', { words: r.words.join('、'), score: r.score }),
    onclick: (e) => {
      form.category.value = r.category;
      for (const b of $$('button', box)) b.setAttribute('aria-pressed', String(b === e.currentTarget));
    },
  }, LANG === 'en' ? r.name_en : r.name, el('span', { class: 'words' }, r.words.join('、')))));
}

function locate(onPosition, onError) {
  if (!navigator.geolocation) { onError(t('report.no_gps')); return; }
  navigator.geolocation.getCurrentPosition(
    (pos) => onPosition({ lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy_m: Math.round(pos.coords.accuracy) }),
    (err) => onError(err.message || t('report.no_gps')),
    { enableHighAccuracy: true, timeout: 15000, maximumAge: 30000 });
}

function showPosition(node, p) {
  node.textContent = t('report.position', { lat: p.lat.toFixed(5), lon: p.lon.toFixed(5), acc: p.accuracy_m });
}

function photoRecord(file) {
  return { blob: file, name: file.name || 'photo.jpg', type: file.type, taken_at: new Date(file.lastModified || Date.now()).toISOString(),
    lat: state.position ? state.position.lat : null, lon: state.position ? state.position.lon : null,
    accuracy_m: state.position ? state.position.accuracy_m : null, id: null };
}

async function submitReport(event) {
  event.preventDefault();
  const form = event.target;
  const error = $('#report-error');
  error.textContent = '';
  const description = form.description.value.trim();
  if (!description) { error.textContent = t('report.need_description'); return; }
  const zone = form.zone.value || null;
  if (!state.position && !zone) { error.textContent = t('report.need_place'); return; }
  const reportId = newKey(`fo-${(session.account && session.account.officer_id) || 'x'}`);
  const body = { report_id: reportId, description, reporter_kind: 'officer' };
  if (form.category.value) body.category = form.category.value;
  if (zone) body.zone = zone;
  if (state.position) {
    body.location = { lat: state.position.lat, lon: state.position.lon };
    body.accuracy_m = state.position.accuracy_m;
  }
  const severity = form.querySelector('input[name=severity]:checked');
  if (severity) body.severity = Number(severity.value);
  if (state.place) body.place = state.place.code;
  await enqueue({ key: `report:${reportId}`, kind: 'report', label: t('outbox.report', { text: description.slice(0, 24) }),
    body, photos: state.photos.map(photoRecord) });
  form.reset();
  state.photos = [];
  state.position = null;
  state.place = null;
  $('#report-position').textContent = '';
  $('#report-guess').replaceChildren();
  drawThumbs(state.photos, $('#report-thumbs'));
  go('tasks');
}

// ---------------------------------------------------------------- the outbox
const queuedKeys = new Set(); // keys being written, so that a tap during the write is caught too
let sending = false;
let retryTimer = null;
let retryMs = 1000;

async function enqueue(item) {
  if (queuedKeys.has(item.key) || state.outbox.some((i) => i.key === item.key && i.state !== 'refused')) return false;
  queuedKeys.add(item.key);
  try {
    item.state = 'waiting';
    item.created_at = new Date().toISOString();
    item.account = session.account && session.account.name; // sent only under this account's token
    item.seq = await db.put('outbox', item);
    state.outbox.push(item);
  } finally {
    queuedKeys.delete(item.key);
  }
  renderOutbox();
  toast(navigator.onLine ? t('outbox.sending') : t('outbox.saved_offline'));
  flush();
  return true;
}

/** The outbox's badge, list and refusals; `redraw`: the task list or the task shown too (their "waiting to
 *  send" notes), for a caller that does not draw them itself. */
function renderOutbox({ redraw = true } = {}) {
  const waiting = state.outbox.filter((i) => i.state !== 'refused');
  const badge = $('#outbox-badge');
  badge.hidden = waiting.length === 0;
  badge.textContent = t('outbox.badge', { n: waiting.length });
  const list = $('#outbox-list');
  list.replaceChildren(...state.outbox.map((i) => el('li', { dataset: { state: i.state, key: i.key } },
    `${i.label} · ${t(`outbox.state.${i.state}`)}`, i.error ? ` · ${i.error}` : '',
    i.photos.length ? ` · ${t('outbox.photos', { n: i.photos.length })}` : '')));
  $('#outbox-empty').hidden = state.outbox.length > 0;
  const refused = state.outbox.filter((i) => i.state === 'refused');
  const box = $('#refused');
  box.hidden = refused.length === 0;
  box.replaceChildren(...refused.map((i) => el('div', { class: 'item', dataset: { key: i.key } },
    el('strong', {}, t('outbox.refused_title', { label: i.label })),
    el('span', { class: 'reason' }, i.error),
    el('button', { type: 'button', onclick: () => dismiss(i) }, t('outbox.dismiss')))));
  if (!redraw) return;
  if (state.view === 'tasks') renderTasks();
  else if (state.view === 'task' && state.current) renderTask(state.current);
}

async function dismiss(item) {
  await db.del('outbox', item.seq);
  state.outbox = state.outbox.filter((i) => i.seq !== item.seq);
  renderOutbox();
  if (item.incident_id) loadTasks({ announce: false });
}

function scheduleRetry() {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(flush, retryMs);
  retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
}

/** Sends the waiting items in order; stops at the first that cannot go now (offline, server error). */
async function flush() {
  if (sending || !session.token || !state.outbox.length) return; // nothing to send: nothing to draw again
  sending = true;
  let sentAny = false;
  try {
    const me = session.account && session.account.name;
    for (const item of state.outbox.slice()) {
      if (item.state === 'refused' || (item.account && item.account !== me)) continue;
      try {
        await send(item);
        await db.del('outbox', item.seq);
        state.outbox = state.outbox.filter((i) => i.seq !== item.seq);
        sentAny = true;
        retryMs = 1000;
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) break; // sign in again; the outbox waits
        if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
          item.state = 'refused';
          item.error = `${err.status}: ${err.detail}`;
          await db.put('outbox', item);
          continue; // kept and shown; the next item is independent of it
        }
        item.state = 'waiting';
        scheduleRetry(); // offline, or the server is busy or down: try again later, in the same order
        break;
      }
    }
  } finally {
    sending = false;
    renderOutbox();
  }
  if (sentAny) loadTasks({ announce: false });
}

async function uploadPhotos(item) {
  for (const photo of item.photos) {
    if (photo.id) continue;
    const form = new FormData();
    form.append('file', photo.blob, photo.name);
    form.append('taken_at', photo.taken_at);
    if (photo.lat !== null) form.append('lat', String(photo.lat));
    if (photo.lon !== null) form.append('lon', String(photo.lon));
    if (photo.accuracy_m !== null) form.append('accuracy_m', String(photo.accuracy_m));
    const stored = await api('POST', 'media', undefined, { form });
    photo.id = stored.id;
    await db.put('outbox', item); // an uploaded photo is not uploaded again after a failure further on
  }
  return item.photos.map((p) => p.id);
}

async function send(item) {
  item.state = 'sending';
  const photos = await uploadPhotos(item);
  const body = { ...item.body };
  if (photos.length) body.photos = photos;
  if (item.kind === 'report') return api('POST', 'incidents', body);
  if (item.kind === 'note') return api('POST', `incidents/${item.incident_id}/notes`, body);
  if (item.kind === 'status') return api('POST', `units/${encodeURIComponent(item.officer)}/status`, body);
  if (item.kind === 'step') {
    return api('POST', `incidents/${item.incident_id}/assignments/${encodeURIComponent(item.team)}/${item.action}`, body);
  }
  throw new ApiError(400, `unknown outbox item ${item.kind}`);
}

// ---------------------------------------------------------------- live: /ws/field, resuming by seq
let socket = null;
let socketRetry = 1000;
let socketTimer = null;
let pollTimer = null;
let refreshTimer = null;
let saveTimer = null;
let reconnected = false; // a hello after the first one: the socket came back after a gap

function startLive() {
  stopLive();
  reconnected = false;
  connect();
  pollTimer = setInterval(() => { if (!socket || socket.readyState !== WebSocket.OPEN) loadTasks(); }, POLL_MS);
}

function stopLive() {
  clearTimeout(socketTimer);
  clearInterval(pollTimer);
  if (socket) { socket.onclose = null; socket.onmessage = null; socket.close(); socket = null; }
}

function connect() {
  if (!session.token || !navigator.onLine) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // The feed's scope is the list's: its `tasks` frames replace the list's tasks of an incident.
  const after = state.lastSeq ? `&after=${state.lastSeq}` : '';
  socket = new WebSocket(`${scheme}://${location.host}/ws/field?scope=${state.scope}${after}`,
    ['dispatcher.bearer', `dispatcher.bearer.${session.token}`]);
  socket.onopen = () => { socketRetry = 1000; };
  socket.onmessage = (msg) => {
    let frame;
    try { frame = JSON.parse(msg.data); } catch { return; }
    if (typeof frame.seq === 'number' && frame.seq > state.lastSeq) rememberSeq(frame.seq);
    if (frame.kind === 'tasks') patchTasks(frame);
    else if (frame.kind === 'snapshot' || (frame.kind === 'hello' && reconnected)) {
      refreshSoon(); // back after a gap: the list is read once, in case an incident closed meanwhile
    }
    if (frame.kind === 'hello') reconnected = true;
  };
  socket.onclose = (e) => {
    socket = null;
    if (e.code === 4401) { needPassword(e.reason); return; }
    socketTimer = setTimeout(connect, socketRetry);
    socketRetry = Math.min(socketRetry * 2, RETRY_MAX_MS);
  };
}

/** A `tasks` frame: the incident's tasks as they stand now replace those the list had (none: it leaves). */
function patchTasks(frame) {
  const kept = state.tasks.filter((i) => i.id !== frame.incident_id);
  takeTasks(kept.concat(frame.tasks || []));
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => {
    db.put('kv', { at: new Date().toISOString(), data: { data: state.tasks, seq: state.lastSeq } }, `tasks.${state.scope}`)
      .catch(() => {});
  }, 1000);
}

function rememberSeq(seq) {
  state.lastSeq = seq;
  localStorage.setItem('field.seq', String(seq));
}

let audio = null;

/** Browsers start an AudioContext suspended until the user touches the page: the first touch unlocks it, so
 *  that a task arriving later can beep while the officer is not touching the screen. */
function unlockAudio() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === 'suspended') audio.resume();
  } catch { /* no WebAudio on this phone */ }
}

function alertNewTask() {
  try {
    unlockAudio();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.25, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.5);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.5);
  } catch { /* no sound on this phone */ }
  if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
  toast(t('tasks.new'));
}

// ---------------------------------------------------------------- place codes
function codeFrom(text) {
  const value = String(text || '').trim();
  const found = value.match(/\/field\/place\/([^/?#\s]+)/);
  return decodeURIComponent(found ? found[1] : value);
}

async function scanImage(file) {
  const error = $('#scan-error');
  error.textContent = '';
  try {
    if ('BarcodeDetector' in window) {
      const detector = new BarcodeDetector({ formats: ['qr_code'] });
      const found = await detector.detect(await createImageBitmap(file));
      if (found.length) { openPlace(codeFrom(found[0].rawValue)); return; }
    }
    const form = new FormData();
    form.append('file', file, file.name || 'code.jpg');
    const data = await api('POST', 'places/decode', undefined, { form });
    openPlace(codeFrom(data.code));
  } catch (err) {
    error.textContent = err instanceof ApiError ? err.detail : t('scan.failed');
  }
}

async function openPlace(code) {
  if (!code) return;
  if (location.pathname !== `/field/place/${encodeURIComponent(code)}`) {
    history.pushState(null, '', `/field/place/${encodeURIComponent(code)}`);
  }
  const box = $('#place-detail');
  box.replaceChildren(el('p', { class: 'muted' }, t('place.loading')));
  go('place', { push: false });
  let data;
  try {
    data = await api('GET', `places/${encodeURIComponent(code)}`);
  } catch (err) {
    box.replaceChildren(el('p', { class: 'error' }, err instanceof ApiError ? err.detail : t('net.offline')));
    return;
  }
  const place = data;
  const incidents = data.incidents || [];
  const contact = place.contact ? [place.contact.name, place.contact.phone].filter(Boolean).join(' ') : '';
  box.replaceChildren(
    el('div', { class: 'card', id: 'place-card' },
      el('h2', {}, place.name || place.code),
      el('dl', { class: 'kv' },
        el('dt', {}, t('place.code')), el('dd', {}, place.code || code),
        el('dt', {}, t('place.kind')), el('dd', {}, place.kind ? t(`place.kind.${place.kind}`) : ''),
        el('dt', {}, t('place.address')), el('dd', {}, place.address || ''),
        el('dt', {}, t('report.zone_short')), el('dd', {}, zoneName(place.zone)),
        el('dt', {}, t('place.contact')), el('dd', {}, contact)),
      place.notes ? el('p', { class: 'muted' }, place.notes) : null,
      smallMap({ location: place.location, zone: place.zone }, true)),
    el('button', { class: 'primary big', type: 'button', id: 'report-here',
      onclick: () => { state.place = { code: place.code || code, name: place.name, zone: place.zone }; go('report'); } },
    t('place.report_here')),
    el('div', { class: 'card' }, el('h2', {}, t('place.incidents', { n: incidents.length })),
      el('ul', { class: 'list small' }, ...incidents.map((i) => el('li', {},
        `#${i.id} ${t(`status.${i.status}`)} · `, el('span', { class: 'desc' }, i.description))))),
    ...(incidents.length ? [] : [el('p', { class: 'empty' }, t('place.none'))]));
}

// ---------------------------------------------------------------- my status and position
let watchId = null;
let lastPositionSent = 0;

function renderMe() {
  const account = session.account || {};
  $('#me-name').textContent = account.name || '';
  $('#me-officer').textContent = t('me.officer', { id: account.officer_id || '' });
  const status = localStorage.getItem('field.status') || '';
  for (const b of $$('.status button')) b.setAttribute('aria-pressed', String(b.dataset.status === status));
  $('#share-position').checked = localStorage.getItem('field.share') === 'true';
}

async function setStatus(status) {
  const officer = session.account && session.account.officer_id;
  if (!officer) return;
  localStorage.setItem('field.status', status);
  renderMe();
  await enqueue({ key: `status:${newKey(status)}`, kind: 'status', officer, label: t('outbox.status', { status: t(`me.${status}`) }),
    body: { status }, photos: [] });
  followPosition();
}

function followPosition() {
  const share = localStorage.getItem('field.share') === 'true' && localStorage.getItem('field.status') === 'available';
  if (!share) {
    if (watchId !== null) navigator.geolocation.clearWatch(watchId);
    watchId = null;
    return;
  }
  if (watchId !== null || !navigator.geolocation) return;
  watchId = navigator.geolocation.watchPosition((pos) => {
    const p = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy_m: Math.round(pos.coords.accuracy) };
    showPosition($('#me-position'), p);
    // Positions are sent directly, at most once a minute: only the latest one matters, so none is queued.
    if (Date.now() - lastPositionSent < 60000 || !navigator.onLine) return;
    lastPositionSent = Date.now();
    const officer = session.account.officer_id;
    api('POST', `units/${encodeURIComponent(officer)}/status`, { location: { lat: p.lat, lon: p.lon } }).catch(() => {});
  }, () => {}, { enableHighAccuracy: true, maximumAge: 30000 });
}

// ---------------------------------------------------------------- start
function showNetwork() {
  const net = $('#net');
  net.dataset.state = navigator.onLine ? 'online' : 'offline';
  net.textContent = t(navigator.onLine ? 'net.online' : 'net.offline');
}

/** The phone is on or off the network: shown; back on, the outbox is sent and the list read once (by the feed's
 *  hello when the socket is opened again, or at once when it stayed open). */
function onNetwork() {
  showNetwork();
  if (!navigator.onLine) return;
  retryMs = 1000;
  flush();
  if (!session.token) return;
  if (socket) refreshSoon();
  else { reconnected = true; connect(); }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => loadTasks(), 150); // several reasons at once: one reading
}

/** What the first screen needs from the server and the phone, asked together (one round trip, not four);
 *  `early`: the requests index.html started for the same token (`window.fieldEarly`). */
function fetchStart(early = {}) {
  return Promise.all([db.all('outbox'), fetchReference(early), fetchTasks(early.tasks)]);
}

async function start(early) {
  if (!session.token) { if (refusedEarly !== null) needPassword(refusedEarly); else go('signin'); return; }
  const placeCode = location.pathname.match(/^\/field\/place\/([^/]+)/);
  go(placeCode ? 'place' : 'tasks', { push: false });
  const [outbox, reference, tasks] = await (early || fetchStart());
  if (!session.token) { needPassword(refusedEarly || ''); return; } // the token was refused meanwhile
  state.outbox = outbox.sort((a, b) => a.seq - b.seq);
  renderOutbox({ redraw: false }); // the list is drawn below, once
  for (const [key, data] of reference) applyReference(key, data);
  await takeAnswer(tasks, { announce: false, draw: false });
  renderTasks(); // once, with the zones' names and the catalogue's labels at hand
  if (placeCode) openPlace(decodeURIComponent(placeCode[1]));
  startLive();
  flush();
  followPosition();
}

function wire() {
  $('#signin-form').addEventListener('submit', signIn);
  $('#report-form').addEventListener('submit', submitReport);
  $('#report-form').description.addEventListener('input', onDescription);
  $('#report-form').category.addEventListener('change', () => {
    for (const b of $$('#report-guess button')) b.setAttribute('aria-pressed', String(b.dataset.category === $('#report-form').category.value));
  });
  $('#report-photos').addEventListener('change', (e) => {
    const input = e.target;
    const room = MAX_PHOTOS - state.photos.length;
    const files = Array.from(input.files);
    if (files.length > room) toast(t('report.too_many', { n: MAX_PHOTOS }));
    state.photos.push(...files.slice(0, Math.max(room, 0)));
    input.value = '';
    drawThumbs(state.photos, $('#report-thumbs'));
  });
  $('#report-gps').addEventListener('click', () => {
    $('#report-position').textContent = t('report.locating');
    locate((p) => { state.position = p; showPosition($('#report-position'), p); },
      (why) => { $('#report-position').textContent = why; });
  });
  $('#scan-photo').addEventListener('change', (e) => { if (e.target.files[0]) scanImage(e.target.files[0]); e.target.value = ''; });
  $('#scan-form').addEventListener('submit', (e) => { e.preventDefault(); openPlace(codeFrom(e.target.code.value)); });
  for (const button of $$('[data-go]')) button.addEventListener('click', () => {
    if (button.dataset.go === 'report') state.place = null;
    go(button.dataset.go);
    if (button.dataset.go === 'tasks') loadTasks({ announce: false });
  });
  for (const tab of $$('.tabs .tab')) tab.addEventListener('click', () => {
    state.scope = tab.dataset.scope;
    for (const t2 of $$('.tabs .tab')) t2.setAttribute('aria-selected', String(t2 === tab));
    loadTasks({ announce: false });
    if (session.token) startLive();
  });
  for (const b of $$('.status button')) b.addEventListener('click', () => setStatus(b.dataset.status));
  $('#share-position').addEventListener('change', (e) => {
    localStorage.setItem('field.share', String(e.target.checked));
    followPosition();
  });
  $('#signout').addEventListener('click', signOut);
  $('#outbox-badge').addEventListener('click', () => go('me'));
  $('#lang').addEventListener('click', async () => {
    const next = LANG === 'zh-CN' ? 'en' : 'zh-CN';
    localStorage.setItem('field.lang', next);
    await loadLabels(next);
    fillSelects();
    showNetwork();
    renderOutbox({ redraw: false });
    renderTasks();
    if (state.current && state.view === 'task') renderTask(state.current);
  });
  document.addEventListener('pointerdown', unlockAudio, { once: true, capture: true });
  window.addEventListener('scroll', redrawSoon, { passive: true });
  window.addEventListener('resize', redrawSoon);
  window.addEventListener('online', onNetwork);
  window.addEventListener('offline', onNetwork);
  window.addEventListener('popstate', () => {
    const placeCode = location.pathname.match(/^\/field\/place\/([^/]+)/);
    if (placeCode) openPlace(decodeURIComponent(placeCode[1]));
    else go('tasks', { push: false });
  });
  setInterval(tick, 1000);
}

async function boot() {
  const asked = new URLSearchParams(location.search).get('lang');
  const lang = ['zh-CN', 'en'].includes(asked) ? asked : localStorage.getItem('field.lang') || 'zh-CN';
  // The page's head asked for the labels, and signed in for the first screen's data, before this script
  // arrived (index.html); what it asked for another token or language is asked again here.
  const head = window.fieldEarly || {};
  const early = head.token === session.token ? head : {};
  const first = session.token ? fetchStart(early) : null;
  await loadLabels(lang, head.lang === lang ? head.labels : undefined);
  wire();
  showNetwork();
  await start(first);
  document.body.dataset.ready = 'true';
  performance.mark('field-ready'); // benchmarks/field.py reads it: the page is drawn and answers taps
  // The tab's icon after the first screen: an SVG icon is a document of its own to load and lay out (~60 ms
  // of the main thread at CPU ×4), and the browser asks for it once the page has loaded, in the middle of boot.
  Object.assign($('#icon'), { type: 'image/svg+xml', href: '/field/assets/icon.svg' });
  // Not needed for the first screen: the worker's install fetches the app's files again to cache them.
  if ('serviceWorker' in navigator) {
    setTimeout(() => navigator.serviceWorker.register('/field/sw.js', { scope: '/field' }).catch(() => {}), 500);
  }
}

boot();
