/* Live board for the township command room.
 *
 * Model: one Map of open incidents (id -> incident in the REST shape, plus a few board-only
 * fields prefixed with "_"), and one Map of open alarms (seq of the raising event -> alarm), kept
 * current from /ws/board (a snapshot, then every event once, in seq order). View: one row element
 * per incident in one of three lanes (main list, triage, admission), one map marker per incident.
 * Events only mark incidents dirty; a flush (next animation frame, at most one per 120 ms) rebuilds
 * just those rows and markers and moves them to their sorted place. A one-second tick rewrites only
 * the countdown cells. Filters toggle the rows' `hidden` attribute (no re-render).
 *
 * Stable DOM hooks (tests and wall-screen scripts rely on them):
 *   #incidents                                  the lanes
 *   [data-incident-id][data-status][data-lane]  one row per open incident
 *   .chip[data-team][data-state][data-role]     one chip per assignment
 *   #connection[data-state=open|closed], #last-seq, #triage-rows, #admission-rows
 *   #drill-banner, .drill[data-exercise], .chip.handover[data-handover]
 *   #alarms, #alarm-list > li[data-alarm-seq] button.alarm-ack (one li per incident and stage:
 *     [data-alarm-group="<incident>:<kind>"][data-alarm-count][data-alarm-seqs]), li[data-alarm-more],
 *     li[data-notice=county] (county forwarding not configured)
 *   .chip.handover[data-delivery=pending|delivered|failed|unconfigured], .due-date[data-due-date]
 *   #detail[data-incident] (the detail panel), its buttons [data-action][data-team]
 *   #map[data-zoom] .marker[data-marker-id][data-status] (.clustered when drawn in a cluster),
 *   #map-clusters [data-cluster-size][data-cluster-ids], #map-tiles image[data-tile],
 *   #map-zoom-in, #map-zoom-out, #map-reset
 *   #filter-module, #filter-team, #filter-status, #filter-zone, #lang-toggle, #operator, #sound-toggle
 *   .chip[data-officer] (the officer sent), .chip[data-waiting] (nobody could go yet), .reports[data-count]
 *   #units-panel, #unit-teams > [data-team] .unit[data-officer][data-status], #waiting-count
 *
 * Times are in the rule table's time zone (Asia/Shanghai by default), not the browser's.
 * All UI labels come from /static/i18n/<lang>.json; names of categories, teams, modules and zones
 * from the rule table (name / name_en). All report text (description, reporter, notes, labels)
 * goes in through textContent.
 */
'use strict';

(() => {
  // ---- constants ------------------------------------------------------------------------

  const STATUSES = ['reported', 'dispatched', 'acknowledged', 'en_route', 'on_scene', 'resolved'];
  const QUEUES = new Set(['triage', 'admission']);
  const FINAL = new Set(['closed', 'cancelled', 'merged']);
  /** The unit states that keep each promise (mirrors the server's KEPT_BY). */
  const KEPT_BY = {
    ack: new Set(['acknowledged', 'en_route', 'on_scene', 'resolved']),
    arrive: new Set(['on_scene', 'resolved']),
    resolve: new Set(['resolved']),
  };
  /** The unit actions the lifecycle allows from each state (mirrors ASSIGNMENT_MOVES). */
  const UNIT_ACTIONS = {
    dispatched: ['acknowledge'],
    acknowledged: ['en-route', 'on-scene', 'resolve'],
    en_route: ['on-scene', 'resolve'],
    on_scene: ['resolve'],
  };
  const LANGS = ['zh-CN', 'en'];
  const FILTER_KEYS = ['module', 'team', 'status', 'zone'];
  const BULK = 64; // more dirty rows than this in one flush: re-sort the lanes wholesale
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
  const STABLE_MS = 5000; // a connection open this long resets the backoff
  const AMBER_SHARE = 0.25; // a countdown turns amber in the last quarter of its window...
  const AMBER_MIN_MS = 60000; // ...and in its last minute at least

  // ---- state ----------------------------------------------------------------------------

  /** @type {Map<number, object>} open incidents by id */
  const incidents = new Map();
  /** @type {Map<number, object>} row views by incident id */
  const views = new Map();
  /** @type {Map<number, object>} open alarms by the seq of the event that raised them */
  const alarms = new Map();
  const order = { main: [], triage: [], admission: [] };
  let lastSeq = null;
  let rules = null;
  const labels = { teams: new Map(), modules: new Map(), zones: new Map(), catalogue: new Map(), departments: new Map() };
  /** @type {Map<string, object>} officers on the roster by id (from /api/v1/units, refreshed) */
  const officers = new Map();
  let unitsDirty = false;

  const dirty = new Set();
  let needFull = true;
  let flushPending = false;
  let alarmsDirty = true;
  let detailDirty = false;

  const params = new URLSearchParams(location.search);
  const filter = {};
  for (const k of FILTER_KEYS) filter[k] = params.get(k) || null;

  // ---- small helpers -------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  let dom = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  /** Write text only when it differs: an equal write still invalidates layout and paint. */
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function store(key, value) {
    try {
      if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value);
    } catch (err) { /* private mode: the setting lasts for this page only */ }
  }
  function recall(key) {
    try { return localStorage.getItem(key); } catch (err) { return null; }
  }

  function bindDom() {
    dom = {
      rows: { main: $('main-rows'), triage: $('triage-rows'), admission: $('admission-rows') },
      empty: { main: $('main-empty'), triage: $('triage-empty'), admission: $('admission-empty') },
      connection: $('connection'),
      connectionText: $('connection-text'),
      lastSeq: $('last-seq'),
      clock: $('clock'),
      openCount: $('open-count'),
      escalatedCount: $('escalated-count'),
      triageCount: $('triage-count'),
      admissionCount: $('admission-count'),
      shownCount: $('shown-count'),
      township: $('township-name'),
      version: $('rules-version'),
      operator: $('operator'),
      sound: $('sound-toggle'),
      langToggle: $('lang-toggle'),
      alarms: $('alarms'),
      alarmList: $('alarm-list'),
      alarmCount: $('alarm-count'),
      detail: $('detail'),
      detailTitle: $('detail-title'),
      detailBody: $('detail-body'),
      map: $('map'),
      mapZones: $('map-zones'),
      mapMarkers: $('map-markers'),
      mapOfficers: $('map-officers'),
      mapClusters: $('map-clusters'),
      unitTeams: $('unit-teams'),
      waitingCount: $('waiting-count'),
      filters: {},
    };
    for (const k of FILTER_KEYS) dom.filters[k] = $(`filter-${k}`);
  }

  // ---- language -------------------------------------------------------------------------

  let lang = pickLang(params.get('lang') || recall('board.lang') || 'zh-CN');
  let dict = null;

  function pickLang(value) {
    const v = String(value || '').toLowerCase();
    if (v.startsWith('en')) return 'en';
    return 'zh-CN';
  }

  /** The UI text for `key` in the current language, with {placeholders} filled in. */
  function t(key, vars) {
    let text = dict && Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : key;
    if (vars) text = text.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
    return text;
  }

  /** A rule-table object's label in the current language (name / name_en). */
  function name(obj, fallback) {
    if (!obj) return fallback === undefined ? '—' : fallback;
    return lang === 'en' ? obj.name_en || obj.name : obj.name;
  }

  async function loadLang(wanted) {
    const next = pickLang(wanted);
    try {
      const res = await fetch(`/static/i18n/${next}.json`, { headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`i18n ${next}: HTTP ${res.status}`);
      dict = await res.json();
      lang = next;
    } catch (err) {
      console.warn('board: could not load the translation file', err);
      if (!dict) setTimeout(() => loadLang(next), 3000);
      return;
    }
    store('board.lang', lang);
    document.documentElement.lang = lang;
    applyStaticLabels();
    if (rules) applyRules(rules);
    if (map.zones) drawZones();
    needFull = true;
    alarmsDirty = true;
    detailDirty = true;
    unitsDirty = true; // the on-duty panel names its teams in the language too
    renderLanes();
    schedule();
  }

  function applyStaticLabels() {
    for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
    for (const node of document.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
    dom.langToggle.textContent = t('lang.switch');
    dom.langToggle.dataset.lang = lang;
    paintSound();
    if (account) showAccount(account); // signed in before the labels came: name the role now
    fillFilterOptions();
    if (dom.connection.dataset.state === 'open') setConnection('open', t('conn.open'));
    document.title = `${rules ? name(rules.township, '') : ''} · ${t('app.title')}`;
  }

  // ---- the URL (filters, language, open incident) ------------------------------------------

  function writeUrl() {
    const q = new URLSearchParams(location.search);
    for (const k of FILTER_KEYS) if (filter[k]) q.set(k, filter[k]); else q.delete(k);
    if (lang === 'zh-CN') q.delete('lang'); else q.set('lang', lang);
    if (detail.id !== null) q.set('incident', String(detail.id)); else q.delete('incident');
    const text = q.toString();
    history.replaceState(null, '', `${location.pathname}${text ? `?${text}` : ''}${location.hash}`);
  }

  // ---- time -----------------------------------------------------------------------------

  /* The countdowns run against the server's clock. Every timestamp the server sends (an
   * event's "at", the HTTP Date header) is a lower bound of the server's "now" when it
   * arrives, so the largest (server time - local time) seen in the last ten minutes estimates
   * the skew; replayed old events only give looser bounds and never win. */
  const SKEW_WINDOW_MS = 600000;
  const skew = { samples: [], offset: 0 };

  function noteServerTime(serverMs) {
    if (!Number.isFinite(serverMs)) return;
    const local = Date.now();
    const v = serverMs - local;
    const s = skew.samples;
    while (s.length && local - s[0].t > SKEW_WINDOW_MS) s.shift();
    while (s.length && s[s.length - 1].v <= v) s.pop();
    if (s.length < 256) s.push({ v, t: local });
    const best = s[0].v;
    skew.offset = Math.abs(best) < 1500 ? 0 : best;
  }

  const now = () => Date.now() + skew.offset;

  const ISO_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/;

  /** Milliseconds since the epoch for an ISO 8601 string (any fraction length); NaN if none. */
  function parseTime(text) {
    if (typeof text !== 'string') return NaN;
    const m = ISO_RE.exec(text);
    if (!m) return Date.parse(text);
    const frac = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '.000';
    let zone = m[3] || 'Z';
    if (zone.length === 5) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`; // +0800 -> +08:00
    return Date.parse(m[1] + frac + zone);
  }

  const pad2 = (n) => (n < 10 ? '0' : '') + n;

  /** "mm:ss" under an hour, "h:mm:ss" under a day, then "Nd hh:mm:ss"; negative when passed. */
  function formatSpan(ms) {
    let total = Math.floor(ms / 1000);
    const sign = total < 0 ? '-' : '';
    if (total < 0) total = -total;
    const s = total % 60;
    const m = Math.floor(total / 60) % 60;
    const h = Math.floor(total / 3600);
    if (h === 0) return `${sign}${pad2(m)}:${pad2(s)}`;
    if (h < 24) return `${sign}${h}:${pad2(m)}:${pad2(s)}`;
    return `${sign}${Math.floor(h / 24)}d ${pad2(h % 24)}:${pad2(m)}:${pad2(s)}`;
  }

  /* Every time on the board is in the rule table's time zone (Asia/Shanghai unless the table says
   * otherwise), not the browser's: a wall screen set to another zone shows the township's hours. */
  const DEFAULT_ZONE = 'Asia/Shanghai';
  const zoneFormats = new Map();

  function timeZone() {
    return (rules && rules.timezone) || DEFAULT_ZONE;
  }

  /** {y, mo, d, h, mi, s} of an instant in the table's time zone. */
  function zonedParts(ms) {
    const zone = timeZone();
    let fmt = zoneFormats.get(zone);
    if (!fmt) {
      try {
        fmt = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit',
          day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
      } catch (err) {
        fmt = new Intl.DateTimeFormat('en-GB', { timeZone: DEFAULT_ZONE, hourCycle: 'h23', year: 'numeric',
          month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
      }
      zoneFormats.set(zone, fmt);
    }
    const p = {};
    for (const part of fmt.formatToParts(new Date(ms))) p[part.type] = part.value;
    return { y: p.year, mo: p.month, d: p.day, h: p.hour, mi: p.minute, s: p.second };
  }

  function formatClock(ms) {
    if (!Number.isFinite(ms)) return '—';
    const p = zonedParts(ms);
    return `${p.h}:${p.mi}:${p.s}`;
  }

  function formatDate(ms) {
    if (!Number.isFinite(ms)) return '—';
    const p = zonedParts(ms);
    return `${p.y}-${p.mo}-${p.d}`;
  }

  const DAY_MS = 86400000;

  /** A due time: the clock time within a day of now, the date and time (to the minute) beyond. */
  function formatDue(ms) {
    if (!Number.isFinite(ms)) return '—';
    if (Math.abs(ms - now()) < DAY_MS) return formatClock(ms);
    const p = zonedParts(ms);
    return `${p.y}-${p.mo}-${p.d} ${p.h}:${p.mi}`;
  }

  function formatStamp(text) {
    const ms = parseTime(text);
    return Number.isFinite(ms) ? `${formatDate(ms)} ${formatClock(ms)}` : '—';
  }

  // ---- labels ---------------------------------------------------------------------------

  function applyRules(data) {
    rules = data;
    for (const key of Object.keys(labels)) labels[key].clear();
    for (const x of data.teams || []) labels.teams.set(x.id, x);
    for (const x of data.modules || []) labels.modules.set(x.id, x);
    for (const x of data.zones || []) labels.zones.set(x.id, x);
    for (const x of data.catalogue || []) labels.catalogue.set(x.id, x);
    for (const x of data.county_departments || []) labels.departments.set(x.id, x);
    const tw = data.township || {};
    dom.township.textContent = name(tw, tw.id || t('brand.default'));
    dom.township.title = lang === 'en' ? tw.name || '' : tw.name_en || '';
    document.title = `${name(tw, '')} · ${t('app.title')}`;
    dom.version.textContent = data.version || '?';
    for (const inc of incidents.values()) {
      if (!inc.escalate_to) inc.escalate_to = moduleLead(inc.module);
    }
    fillFilterOptions();
    needFull = true;
    detailDirty = true;
    alarmsDirty = true;
    schedule();
  }

  let rulesFetching = false;
  let rulesFetchedAt = 0;

  async function loadRules() {
    if (rulesFetching) return;
    rulesFetching = true;
    rulesFetchedAt = Date.now();
    try {
      const res = await api('/api/v1/rules', { cache: 'no-store', headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`rules: HTTP ${res.status}`);
      noteServerTime(Date.parse(res.headers.get('date') || ''));
      applyRules(await res.json());
      loadZones();
    } catch (err) {
      console.warn('board: could not load the rule table, retrying', err);
      setTimeout(loadRules, 5000);
    } finally {
      rulesFetching = false;
    }
  }

  /** Refetch the rule table when an incident was routed by another version (at most every 30 s). */
  function checkTableVersion(version) {
    if (rules && version && version !== rules.version && Date.now() - rulesFetchedAt > 30000) loadRules();
  }

  function moduleLead(moduleId) {
    const m = labels.modules.get(moduleId);
    return m && m.lead ? { name: m.lead.name, title: m.lead.title, level: 'module_lead' } : null;
  }

  /** A leader's title in the board's language: the table's (Chinese) title, or in English the level's label. */
  function leaderTitle(level, title) {
    if (lang === 'en' && level && dict && Object.prototype.hasOwnProperty.call(dict, `level.${level}`)) return t(`level.${level}`);
    return title || '';
  }

  const teamName = (id) => name(labels.teams.get(id), id);
  const kindName = (kind) => t(`kind.${kind}`);

  // ---- model: snapshot and events -----------------------------------------------------

  function prepare(inc) {
    inc.assignments = Array.isArray(inc.assignments) ? inc.assignments : [];
    inc.zones = Array.isArray(inc.zones) ? inc.zones : [];
    inc.routing = inc.routing || { table_version: null, rule_id: null, queue: null };
    inc._escalations = inc._escalations || [];
    inc._note = inc._note || null;
    // A snapshot carries no events: every missed deadline was escalated to the incident's lead.
    for (const a of inc.assignments) {
      a.deadlines = Array.isArray(a.deadlines) ? a.deadlines : [];
      for (const d of a.deadlines) {
        if (d.state === 'missed' && inc.escalate_to && inc.escalate_to.name) {
          addEscalation(inc, { team: a.team, kind: d.kind, level: 'module_lead',
            to_name: inc.escalate_to.name, to_title: inc.escalate_to.title });
          inc._escalations[inc._escalations.length - 1].level = inc._escalations[inc._escalations.length - 1].level || 'module_lead';
        }
      }
    }
    return inc;
  }

  function addEscalation(inc, e) {
    const dup = inc._escalations.some((x) => x.team === e.team && x.kind === e.kind && x.level === e.level);
    if (!dup) inc._escalations.push(e);
  }

  function onSnapshot(msg) {
    countyForwarding = msg.county_forwarding !== false;
    const tiles = typeof msg.map_tiles === 'string' && msg.map_tiles ? msg.map_tiles : null;
    if (tiles !== map.tiles) {
      map.tiles = tiles;
      map.tileKey = '';
      if (map.proj) drawTiles();
    }
    incidents.clear();
    for (const raw of msg.incidents || []) {
      if (!raw || FINAL.has(raw.status)) continue;
      incidents.set(raw.id, prepare(raw));
    }
    alarms.clear();
    for (const a of msg.alarms || []) if (a && typeof a.seq === 'number') alarms.set(a.seq, a);
    alarmsDirty = true;
    lastSeq = typeof msg.seq === 'number' ? msg.seq : 0;
    needFull = true;
    dirty.clear();
    if (detail.id !== null) refreshDetail();
    schedule();
  }

  /* A snapshot comes in pages (`more` true until the last): they are gathered per connection and
   * applied at once when the last arrives, so the board never shows half a snapshot. A connection
   * that ends mid-snapshot leaves the board as it was (and lastSeq with it). */
  let pendingSnapshot = null;

  function onSnapshotFrame(socket, msg) {
    if (msg.kind === 'snapshot') {
      pendingSnapshot = { socket, seq: msg.seq, alarms: msg.alarms || [], incidents: [],
        county_forwarding: msg.county_forwarding !== false, map_tiles: msg.map_tiles ?? null };
    } else if (!pendingSnapshot || pendingSnapshot.socket !== socket || pendingSnapshot.seq !== msg.seq) {
      console.warn('board: a snapshot page without its first frame');
      return;
    }
    for (const raw of msg.incidents || []) pendingSnapshot.incidents.push(raw);
    if (msg.more) return;
    const whole = pendingSnapshot;
    pendingSnapshot = null;
    onSnapshot(whole);
  }

  function findAssignment(inc, team) {
    return inc.assignments.find((a) => a.team === team) || null;
  }

  /** The teams an ``AssignmentWaiting`` names: ``teams``, or the one ``team`` of an event logged before. */
  function waitingTeams(d) {
    return Array.isArray(d.teams) ? d.teams : d.team ? [d.team] : [];
  }

  /** Fold one event into the open alarms, with the server's rules (dispatcher/alarms.py). */
  function foldAlarm(type, d, seq, live) {
    const id = d.incident_id;
    if (type === 'IncidentClosed' || type === 'IncidentCancelled' || type === 'IncidentMerged') {
      for (const [s, a] of alarms) if (a.incident_id === id) alarms.delete(s);
      alarmsDirty = true;
    } else if (type === 'AlarmAcknowledged') {
      if (alarms.delete(d.alarm_seq)) alarmsDirty = true;
    } else if (type === 'AlarmsResolved') {
      // The team kept the promise late: its alarms of those kinds resolve by themselves.
      const kinds = new Set(d.kinds || []);
      for (const [s, a] of alarms) {
        if (a.incident_id === id && a.team === d.team && kinds.has(a.kind)) {
          alarms.delete(s);
          alarmsDirty = true;
        }
      }
    } else if (type === 'DeadlineMissed' || type === 'EscalationRaised') {
      if (type === 'EscalationRaised') {
        for (const a of alarms.values()) {
          if (a.incident_id === id && a.type === 'DeadlineMissed' && a.level == null && a.team === d.team && a.kind === d.kind) {
            a.level = d.level;
            a.to_name = d.to_name;
            a.to_title = d.to_title;
            alarmsDirty = true;
            return;
          }
        }
      }
      alarms.set(seq, { level: null, to_name: null, to_title: null, ...d, seq, type });
      alarmsDirty = true;
      if (live) beep();
    }
  }

  /** Apply one event to the model; returns whether the board changed. */
  function applyEvent(type, d, seq) {
    if (!d || typeof d.incident_id !== 'number') return false;
    const id = d.incident_id;
    const inc = incidents.get(id);
    switch (type) {
      case 'IncidentReported': {
        if (inc) return false;
        incidents.set(id, prepare({
          id,
          report_id: d.report_id,
          status: 'reported',
          category: d.category,
          reported_category: d.reported_category ?? null,
          description: d.description,
          zone: d.zones && d.zones.length ? d.zones[0] : null,
          zones: d.zones || [],
          location: d.lat != null && d.lon != null ? { lat: d.lat, lon: d.lon } : null,
          severity: d.severity ?? null,
          reporter: d.reporter ?? null,
          reporter_kind: d.reporter_kind ?? null,
          exercise: d.exercise === true,
          occurred_at: d.occurred_at ?? null,
          module: d.module,
          priority: d.priority,
          routing: {
            table_version: d.table_version,
            rule_id: d.rule_id ?? null,
            queue: d.queue ?? null,
            handover: d.handover ?? null,
          },
          escalate_to: moduleLead(d.module),
          assignments: [],
          reported_at: d.at,
          updated_at: d.at,
          version: 1,
          // A county matter opens with a delivery waiting (drills are never forwarded).
          delivery: d.handover && d.exercise !== true
            ? { department: d.handover, state: 'pending', attempts: 0, last_error: null } : null,
        }));
        if (d.handover && !countyForwarding) alarmsDirty = true;
        checkTableVersion(d.table_version);
        return true;
      }
      case 'UnitsDispatched': {
        if (!inc) return false;
        for (const u of d.units || []) {
          const deadlines = [];
          for (const kind of ['ack', 'arrive', 'resolve']) {
            const due = u[`${kind}_due`];
            if (due) deadlines.push({ kind, due_at: due, state: 'pending', settled_at: null });
          }
          const assignment = { team: u.team, role: u.role, state: 'dispatched', officer: u.officer ?? null,
            waiting: false, tried: [], escalations: [], dispatched_at: d.at, updated_at: d.at, deadlines };
          const i = inc.assignments.findIndex((a) => a.team === u.team);
          if (i >= 0) inc.assignments[i] = assignment; else inc.assignments.push(assignment);
        }
        if (d.incident_status) inc.status = d.incident_status;
        break;
      }
      case 'UnitMoved': {
        if (!inc) return false;
        const a = findAssignment(inc, d.team);
        if (a) {
          a.state = d.to_state;
          a.updated_at = d.at;
          for (const dl of a.deadlines) {
            const kept = KEPT_BY[dl.kind];
            if (dl.state === 'pending' && kept && kept.has(d.to_state)) {
              dl.state = 'met';
              dl.settled_at = d.at;
            }
          }
        }
        if (d.incident_status) inc.status = d.incident_status;
        break;
      }
      case 'IncidentClosed':
      case 'IncidentCancelled':
      case 'IncidentMerged':
        if (!inc) return false;
        incidents.delete(id);
        return true;
      case 'AssignmentWaiting': {
        // One event for every team that waits (``teams``); logs written before named one ``team`` per event.
        const found = inc ? waitingTeams(d).map((team) => findAssignment(inc, team)).filter(Boolean) : [];
        if (!found.length) return false;
        for (const a of found) a.waiting = true;
        unitsDirty = true;
        break;
      }
      case 'OfficerAssigned': {
        const a = inc && findAssignment(inc, d.team);
        if (!a) return false;
        if (a.officer) (a.tried = a.tried || []).push(a.officer);
        a.officer = d.officer;
        a.waiting = false;
        if (d.ack_due) {
          const ack = a.deadlines.find((x) => x.kind === 'ack');
          if (ack) Object.assign(ack, { due_at: d.ack_due, state: 'pending', settled_at: null });
          else a.deadlines.unshift({ kind: 'ack', due_at: d.ack_due, state: 'pending', settled_at: null });
        }
        unitsDirty = true;
        break;
      }
      case 'AssignmentReturned':
      case 'AssignmentReassigned': {
        const a = inc && findAssignment(inc, type === 'AssignmentReturned' ? d.team : d.from_team);
        if (!a) return false;
        a.state = type === 'AssignmentReturned' ? 'returned' : 'cancelled';
        for (const dl of a.deadlines) if (dl.state === 'pending') Object.assign(dl, { state: 'void', settled_at: d.at });
        if (type === 'AssignmentReturned' && a.role === 'lead') inc.routing.queue = 'returned';
        if (type === 'AssignmentReassigned' && a.role === 'lead') {
          a.role = 'support';
          inc.routing.queue = null;
        }
        if (d.incident_status) inc.status = d.incident_status;
        unitsDirty = true;
        break;
      }
      case 'PriorityChanged':
        if (!inc) return false;
        inc.priority = d.to_priority;
        break;
      case 'ReportAttached':
      case 'ReportSplit':
        if (!inc) return false;
        inc.report_count = d.report_count;
        break;
      case 'HandoverAttempted':
        if (!inc) return false;
        inc.delivery = { department: d.department, attempts: d.attempt, last_error: d.error,
          state: d.ok ? 'delivered' : d.final ? 'failed' : 'pending' };
        break;
      case 'NoteAdded':
        if (!inc) return false; // notes may follow a closed incident: it is no longer on the board
        inc._note = { author: d.author ?? null, text: d.text ?? '', at: d.at, seq };
        break;
      case 'DeadlineMissed': {
        if (!inc) return false;
        const a = findAssignment(inc, d.team);
        if (!a) return false;
        let dl = a.deadlines.find((x) => x.kind === d.kind);
        if (!dl) {
          dl = { kind: d.kind, due_at: d.due_at, state: 'pending', settled_at: null };
          a.deadlines.push(dl);
        }
        dl.state = 'missed';
        dl.settled_at = d.at;
        dl._late_by = d.late_by;
        break;
      }
      case 'EscalationRaised':
        if (!inc) return false;
        addEscalation(inc, { team: d.team, kind: d.kind, level: d.level, to_name: d.to_name, to_title: d.to_title });
        break;
      default:
        return false; // AlarmAcknowledged and types this board does not know change no row
    }
    inc.updated_at = d.at || inc.updated_at;
    if (d.incident_status && FINAL.has(d.incident_status)) incidents.delete(id);
    return true;
  }

  let lastResync = 0;

  function onEvent(msg) {
    const seq = msg.seq;
    if (typeof seq !== 'number') return;
    if (lastSeq !== null && seq <= lastSeq) return; // seen already (defensive)
    const gap = lastSeq !== null && seq !== lastSeq + 1;
    lastSeq = seq;
    const data = msg.data;
    if (data && data.at) noteServerTime(parseTime(data.at));
    if (data && typeof data.incident_id === 'number') {
      const alarmsBefore = alarms.size;
      foldAlarm(msg.type, data, seq, true);
      const changed = applyEvent(msg.type, data, seq);
      if (changed || alarms.size !== alarmsBefore) dirty.add(data.incident_id);
      if (detail.id === data.incident_id) detailEvent(seq, msg.type, data);
      if (CLOSING_EVENTS.has(msg.type)) scheduleLanes();
    }
    schedule();
    if (gap) {
      console.warn(`board: gap in the feed before seq ${seq}`);
      if (Date.now() - lastResync > 60000) {
        lastResync = Date.now();
        resync();
      }
    }
  }

  // ---- derived row data -----------------------------------------------------------------

  /** Whether an alarm of this incident is open (its row is red like a breached one). */
  function hasAlarm(id) {
    for (const a of alarms.values()) if (a.incident_id === id) return true;
    return false;
  }

  function derive(inc) {
    let flag = inc._escalations.length > 0 || hasAlarm(inc.id);
    let due = Infinity;
    let dueKind = null;
    let dueTeam = null;
    let dueFrom = NaN;
    for (const a of inc.assignments) {
      for (const dl of a.deadlines) {
        if (dl.state === 'missed') flag = true;
        else if (dl.state === 'pending') {
          if (dl._ms === undefined) dl._ms = parseTime(dl.due_at);
          if (dl._ms < due) {
            due = dl._ms;
            dueKind = dl.kind;
            dueTeam = a.team;
            dueFrom = parseTime(a.dispatched_at);
          }
        }
      }
    }
    const q = inc.routing && inc.routing.queue;
    const lane = QUEUES.has(q) && inc.assignments.length === 0 ? q : 'main';
    const pri = Number.isFinite(inc.priority) ? inc.priority : 9;
    if (inc._rep === undefined) inc._rep = parseTime(inc.reported_at);
    const win = Number.isFinite(dueFrom) && due > dueFrom ? due - dueFrom : NaN;
    return { flag, due, dueKind, dueTeam, win, lane, pri, rep: Number.isFinite(inc._rep) ? inc._rep : 0 };
  }

  /** Breached or escalated first, then priority, then the nearest deadline. */
  function compareMain(a, b) {
    if (a.flag !== b.flag) return a.flag ? -1 : 1;
    if (a.pri !== b.pri) return a.pri - b.pri;
    if (a.due !== b.due) return a.due < b.due ? -1 : 1;
    return a.id - b.id;
  }

  function compareQueue(a, b) {
    if (a.pri !== b.pri) return a.pri - b.pri;
    if (a.rep !== b.rep) return a.rep - b.rep;
    return a.id - b.id;
  }

  const comparator = (lane) => (lane === 'main' ? compareMain : compareQueue);

  /** The amber threshold of a countdown: the last quarter of its window, the last minute at least. */
  function amberMs(win) {
    return Number.isFinite(win) ? Math.max(AMBER_MIN_MS, win * AMBER_SHARE) : 5 * AMBER_MIN_MS;
  }

  // ---- filters --------------------------------------------------------------------------

  function matches(inc) {
    if (filter.module && inc.module !== filter.module) return false;
    if (filter.status && inc.status !== filter.status) return false;
    if (filter.team && !inc.assignments.some((a) => a.team === filter.team)) return false;
    if (filter.zone && !(inc.zones.includes(filter.zone) || inc.zone === filter.zone)) return false;
    return true;
  }

  function setVisible(view, inc) {
    const visible = matches(inc);
    if (visible !== view.visible) {
      view.visible = visible;
      view.row.hidden = !visible;
      if (view.marker) view.marker.classList.toggle('filtered', !visible);
    }
  }

  function applyFilters() {
    for (const [id, view] of views) {
      const inc = incidents.get(id);
      if (inc) setVisible(view, inc);
    }
    renderCounts();
    scheduleClusters();
  }

  function fillFilterOptions() {
    if (!dom) return;
    const sources = {
      module: rules ? (rules.modules || []).map((m) => [m.id, name(m)]) : [],
      team: rules ? (rules.teams || []).map((x) => [x.id, name(x)]) : [],
      status: STATUSES.map((s) => [s, t(`status.${s}`)]),
      zone: rules ? (rules.zones || []).map((z) => [z.id, name(z)]) : [],
    };
    for (const k of FILTER_KEYS) {
      const select = dom.filters[k];
      const opts = [el('option', null, t('filter.all'))];
      opts[0].value = '';
      for (const [value, text] of sources[k]) {
        const o = el('option', null, text);
        o.value = value;
        opts.push(o);
      }
      if (filter[k] && !sources[k].some(([v]) => v === filter[k])) {
        const o = el('option', null, filter[k]); // from the URL, before the table names it
        o.value = filter[k];
        opts.push(o);
      }
      select.replaceChildren(...opts);
      select.value = filter[k] || '';
      select.classList.toggle('active', Boolean(filter[k]));
    }
  }

  function onFilterChange(ev) {
    const key = ev.target.dataset.filter;
    if (!key) return;
    filter[key] = ev.target.value || null;
    ev.target.classList.toggle('active', Boolean(filter[key]));
    writeUrl();
    applyFilters();
  }

  function clearFilters() {
    for (const k of FILTER_KEYS) filter[k] = null;
    fillFilterOptions();
    writeUrl();
    applyFilters();
  }

  // ---- DOM building -----------------------------------------------------------------------

  function labelled(text, alt, cls) {
    const span = el('span', cls || 'lbl', text);
    if (alt && alt !== text) span.title = alt;
    return span;
  }

  function altName(obj) {
    return obj ? (lang === 'en' ? obj.name : obj.name_en) : '';
  }

  function categoryNode(id) {
    const c = labels.catalogue.get(id);
    if (c) return labelled(name(c), altName(c), 'lbl cat');
    const span = el('span', 'lbl unknown');
    span.append(el('span', 'mono', id || '—'), el('small', 'sub', t('uncatalogued')));
    return span;
  }

  function zonesNode(inc) {
    const wrap = el('span', 'zones');
    const ids = inc.zones.length ? inc.zones : inc.zone ? [inc.zone] : [];
    if (!ids.length) {
      const loc = inc.location;
      wrap.append(loc ? el('span', 'mono small', `${(+loc.lat).toFixed(4)}, ${(+loc.lon).toFixed(4)}`) : el('span', 'muted', '—'));
      return wrap;
    }
    for (const zid of ids) {
      const z = labels.zones.get(zid);
      wrap.append(z ? labelled(name(z), altName(z), 'lbl zone') : el('span', 'lbl zone mono', zid));
    }
    return wrap;
  }

  function statusNode(status) {
    return el('span', `status status-${status}`, t(`status.${status}`));
  }

  function moduleNode(id) {
    const m = labels.modules.get(id);
    return m ? labelled(name(m), altName(m)) : el('span', 'mono', id || '—');
  }

  function teamChip(a) {
    const team = labels.teams.get(a.team);
    const chip = el('span', `chip role-${a.role} state-${a.state}`);
    chip.dataset.team = a.team;
    chip.dataset.state = a.state;
    chip.dataset.role = a.role;
    const missed = a.deadlines.filter((d) => d.state === 'missed');
    if (missed.length) chip.classList.add('missed');
    chip.append(el('span', 'chip-name', name(team, a.team)));
    chip.append(el('span', 'chip-meta', `${t(`role.${a.role}`)}·${t(`unit.${a.state}`)}`));
    if (a.officer) {
      chip.dataset.officer = a.officer;
      chip.append(el('span', 'chip-officer', officerName(a.officer)));
    } else if (a.waiting) {
      chip.dataset.waiting = 'true';
      chip.classList.add('waiting');
      chip.append(el('span', 'chip-waiting', t('chip.waiting')));
    }
    for (const d of missed) chip.append(el('span', 'chip-miss', t('chip.missed', { kind: kindName(d.kind) })));
    const lines = [team ? `${altName(team)} (${team.department})` : a.team];
    if (a.officer) lines.push(t('chip.officer', { name: officerName(a.officer), id: a.officer }));
    if (a.tried && a.tried.length) lines.push(t('chip.tried', { names: a.tried.map(officerName).join('、') }));
    for (const d of a.deadlines) {
      const due = parseTime(d.due_at);
      lines.push(`${kindName(d.kind)}: ${t(`dl.${d.state}`)}${Number.isFinite(due) ? ` ${formatDue(due)}` : ''}`);
    }
    chip.title = lines.join('\n');
    return chip;
  }

  function escalationNodes(inc) {
    const byTarget = new Map();
    for (const e of inc._escalations) {
      const key = `${e.to_title}\u0000${e.to_name}`;
      if (!byTarget.has(key)) byTarget.set(key, { e, causes: [] });
      byTarget.get(key).causes.push(e);
    }
    const nodes = [];
    for (const { e, causes } of byTarget.values()) {
      const badge = el('span', 'esc-badge', t('esc.to', { title: leaderTitle(e.level, e.to_title), name: e.to_name || '' }).trim());
      badge.dataset.escalated = 'true';
      badge.title = causes.map((c) => t('alarm.missed', { team: teamName(c.team), kind: kindName(c.kind) })).join('; ');
      nodes.push(badge);
    }
    if (!nodes.length && inc.assignments.some((a) => a.deadlines.some((d) => d.state === 'missed'))) {
      nodes.push(el('span', 'esc-badge', t('esc.missed')));
    }
    return nodes;
  }

  function descriptionNodes(inc) {
    const nodes = escalationNodes(inc);
    const desc = el('div', 'desc', inc.description || '');
    desc.title = inc.description || '';
    nodes.push(desc);
    const extra = [];
    if (inc.reporter) extra.push(el('span', 'reporter', t('reporter', { name: inc.reporter })));
    if (inc.severity != null) extra.push(el('span', 'sev', t('severity', { n: inc.severity })));
    if (extra.length) {
      const line = el('div', 'meta');
      line.append(...extra);
      nodes.push(line);
    }
    if (inc._note) {
      const note = el('div', 'note');
      note.append(el('span', 'note-tag', t('note.tag')));
      if (inc._note.author) note.append(el('span', 'note-author', `${inc._note.author}: `));
      note.append(el('span', 'note-text', inc._note.text));
      note.title = inc._note.text;
      nodes.push(note);
    }
    return nodes;
  }

  function td(cls, ...children) {
    const cell = el('div', `cell ${cls}`);
    cell.setAttribute('role', 'cell');
    cell.append(...children);
    return cell;
  }

  function idNode(inc) {
    const frag = document.createDocumentFragment();
    frag.append(el('span', `pri pri-${inc.priority}`, `P${inc.priority}`), el('span', 'id mono', `#${inc.id}`));
    if (inc.report_count > 1) {
      const badge = el('span', 'reports mono', `×${inc.report_count}`);
      badge.dataset.count = String(inc.report_count);
      badge.title = t('reports.count', { n: inc.report_count });
      frag.append(badge);
    }
    if (inc.exercise) {
      const badge = el('span', 'drill', t('drill.badge'));
      badge.dataset.exercise = 'true';
      frag.append(badge);
    }
    return frag;
  }

  /** Rebuild the cells of one row from the model (the row element itself is kept). */
  function fillRow(view, inc, info) {
    const row = view.row;
    row.dataset.incidentId = String(inc.id);
    row.dataset.status = inc.status;
    row.dataset.priority = String(inc.priority);
    row.dataset.lane = info.lane;
    row.classList.toggle('flagged', info.flag);
    row.classList.toggle('selected', detail.id === inc.id);
    row.classList.remove('overdue');
    if (info.flag) row.dataset.flagged = 'true'; else delete row.dataset.flagged;
    view.dueEl = null;
    view.waitEl = null;
    view.text = null;
    view.cls = null;

    if (info.lane === 'main') {
      const dueCell = td('c-due');
      if (Number.isFinite(info.due)) {
        const dueEl = el('span', 'due mono');
        dueEl.dataset.dueAt = new Date(info.due).toISOString();
        const sub = el('small', 'due-what', `${kindName(info.dueKind)} · ${teamName(info.dueTeam)}`);
        sub.title = formatDue(info.due);
        dueCell.append(dueEl, sub);
        if (info.due - now() >= DAY_MS) {
          // A countdown of days says little on its own: give the date it falls due.
          const date = el('small', 'due-date mono', formatDue(info.due));
          date.dataset.dueDate = formatDate(info.due);
          dueCell.append(date);
        }
        view.dueEl = dueEl;
      } else {
        dueCell.append(el('span', 'muted', '—'));
      }
      const chips = el('div', 'chips');
      const lead = inc.assignments.filter((a) => a.role === 'lead');
      const rest = inc.assignments.filter((a) => a.role !== 'lead');
      for (const a of lead.concat(rest)) chips.append(teamChip(a));
      const handover = inc.routing && inc.routing.handover;
      if (!inc.assignments.length && handover) {
        const dept = labels.departments.get(handover);
        const chip = el('span', 'chip handover');
        chip.dataset.handover = handover;
        chip.append(el('span', 'chip-name', t('handover', { dept: name(dept, handover) })));
        if (inc.delivery) {
          // Without a webhook nothing is forwarded: "forwarding, 0 tries" would wait forever.
          const state = inc.delivery.state === 'pending' && !countyForwarding ? 'unconfigured' : inc.delivery.state;
          chip.dataset.delivery = state;
          chip.append(el('span', 'chip-meta', t(`delivery.${state}`, { n: inc.delivery.attempts })));
          if (inc.delivery.last_error) chip.title = inc.delivery.last_error;
        }
        chips.append(chip);
      } else if (!inc.assignments.length) {
        chips.append(el('span', 'muted', t('none_dispatched')));
      }
      row.replaceChildren(
        td('c-id', idNode(inc)),
        td('c-cat', categoryNode(inc.category)),
        td('c-zone', zonesNode(inc)),
        td('c-status', statusNode(inc.status)),
        td('c-module', moduleNode(inc.module)),
        td('c-teams', chips),
        dueCell,
        td('c-desc', ...descriptionNodes(inc)),
      );
    } else {
      const wait = el('span', 'wait mono');
      view.waitEl = wait;
      const catZone = td('q-cat', categoryNode(inc.category));
      catZone.append(zonesNode(inc));
      row.replaceChildren(
        td('q-id', idNode(inc)),
        catZone,
        td('q-wait', wait, statusNode(inc.status)),
        td('q-desc', ...descriptionNodes(inc)),
      );
    }
    paintTimer(view, now());
  }

  /** Write one row's countdown (or waiting time) if its text or colour changed. */
  function paintTimer(view, t0) {
    let text;
    let cls;
    if (view.dueEl) {
      const left = view.due - t0;
      text = formatSpan(left);
      cls = left < 0 ? 'due mono over' : left < amberMs(view.win) ? 'due mono warn' : 'due mono';
      if (text !== view.text) view.dueEl.textContent = text;
      if (cls !== view.cls) {
        view.dueEl.className = cls;
        view.row.classList.toggle('overdue', left < 0);
      }
    } else if (view.waitEl) {
      text = formatSpan(Math.max(0, t0 - view.rep));
      cls = '';
      if (text !== view.text) view.waitEl.textContent = text;
    } else {
      return;
    }
    view.text = text;
    view.cls = cls;
  }

  // ---- rendering ---------------------------------------------------------------------------

  function makeView(inc) {
    const row = el('div', 'row');
    row.setAttribute('role', 'row');
    row.tabIndex = 0;
    const view = { id: inc.id, row, lane: 'main', flag: false, pri: 9, due: Infinity, win: NaN, rep: 0,
      visible: true, marker: null };
    views.set(inc.id, view);
    return view;
  }

  function update(view, inc) {
    const info = derive(inc);
    view.flag = info.flag;
    view.pri = info.pri;
    view.due = info.due;
    view.win = info.win;
    view.rep = info.rep;
    const oldLane = view.lane;
    view.lane = info.lane;
    fillRow(view, inc, info);
    placeMarker(view, inc, info);
    setVisible(view, inc);
    return oldLane;
  }

  function bisect(arr, view, cmp) {
    let lo = 0;
    let hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(arr[mid], view) < 0) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function detach(view, lane) {
    const arr = order[lane];
    const i = arr.indexOf(view);
    if (i >= 0) arr.splice(i, 1);
  }

  function place(view) {
    const arr = order[view.lane];
    const i = bisect(arr, view, comparator(view.lane));
    arr.splice(i, 0, view);
    const next = arr[i + 1];
    const box = dom.rows[view.lane];
    if (view.row.parentNode !== box || view.row.nextSibling !== (next ? next.row : null)) {
      box.insertBefore(view.row, next ? next.row : null);
    }
  }

  /* A row just changed is highlighted for a couple of seconds: a class set now and cleared
   * by the tick (two repaints, no per-frame animation across a busy list). */
  const FRESH_MS = 2500;
  const fresh = new Map(); // row element -> time to clear

  function markFresh(row) {
    row.classList.add('fresh');
    fresh.set(row, Date.now() + FRESH_MS);
  }

  function clearFresh() {
    const t0 = Date.now();
    for (const [row, until] of fresh) {
      if (until <= t0) {
        row.classList.remove('fresh');
        fresh.delete(row);
      }
    }
  }

  function removeView(view) {
    detach(view, view.lane);
    view.row.remove();
    if (view.marker) view.marker.remove();
    fresh.delete(view.row);
    views.delete(view.id);
  }

  function renderAll() {
    for (const view of views.values()) if (view.marker) view.marker.remove();
    views.clear();
    fresh.clear();
    for (const lane of Object.keys(order)) order[lane] = [];
    for (const inc of incidents.values()) {
      const view = makeView(inc);
      update(view, inc);
      order[view.lane].push(view);
    }
    for (const lane of Object.keys(order)) {
      order[lane].sort(comparator(lane));
      const frag = document.createDocumentFragment();
      for (const v of order[lane]) frag.append(v.row);
      dom.rows[lane].replaceChildren(frag);
    }
  }

  function renderDirty() {
    const bulk = dirty.size > BULK;
    for (const id of dirty) {
      const inc = incidents.get(id);
      let view = views.get(id);
      if (!inc) {
        if (view) removeView(view);
        continue;
      }
      const isNew = !view;
      if (isNew) view = makeView(inc);
      const oldLane = update(view, inc);
      if (bulk) {
        if (isNew) order[view.lane].push(view);
        else if (oldLane !== view.lane) {
          detach(view, oldLane);
          order[view.lane].push(view);
        }
      } else {
        if (!isNew) detach(view, oldLane);
        place(view);
        markFresh(view.row);
      }
    }
    dirty.clear();
    if (bulk) {
      for (const lane of Object.keys(order)) {
        order[lane].sort(comparator(lane));
        const frag = document.createDocumentFragment();
        for (const v of order[lane]) frag.append(v.row);
        dom.rows[lane].append(frag); // moves the existing rows into order
      }
    }
  }

  function renderCounts() {
    // Every counter counts the rows its lane shows (the filters apply to both).
    const shownIn = (lane) => order[lane].reduce((k, v) => k + (v.visible ? 1 : 0), 0);
    let flagged = 0;
    for (const v of order.main) if (v.flag && v.visible) flagged += 1;
    setText(dom.openCount, String(shownIn('main') + shownIn('triage') + shownIn('admission')));
    setText(dom.escalatedCount, String(flagged));
    dom.escalatedCount.parentElement.classList.toggle('hot', flagged > 0);
    setText(dom.triageCount, String(shownIn('triage')));
    setText(dom.admissionCount, String(shownIn('admission')));
    for (const lane of Object.keys(order)) {
      let shown = 0;
      for (const v of order[lane]) if (v.visible) shown += 1;
      if (dom.empty[lane].hidden !== shown > 0) dom.empty[lane].hidden = shown > 0;
    }
    let visible = 0;
    for (const v of views.values()) if (v.visible) visible += 1;
    setText(dom.shownCount, `${visible}/${views.size}`);
    setText(dom.lastSeq, lastSeq === null ? '–' : String(lastSeq));
    let drills = 0;
    for (const inc of incidents.values()) if (inc.exercise) drills += 1;
    const banner = $('drill-banner');
    if (banner) {
      if (banner.hidden !== (drills === 0)) {
        banner.hidden = drills === 0;
        if (detail.id !== null) placeDetail();
      }
      setText(banner, t('drill.banner', { n: drills }));
    }
  }

  /* Renders are coalesced: at most one per MIN_FLUSH_GAP_MS, on an animation frame, so a burst
   * of events costs a few renders, not one per event. The plain timer covers hidden tabs
   * (no animation frames there). */
  const MIN_FLUSH_GAP_MS = 120;
  let lastFlush = 0;

  function schedule() {
    if (flushPending) return;
    flushPending = true;
    const wait = Math.max(0, lastFlush + MIN_FLUSH_GAP_MS - performance.now());
    if (wait > 0) setTimeout(() => requestAnimationFrame(flush), wait);
    else requestAnimationFrame(flush);
    setTimeout(flush, wait + 250);
  }

  function flush() {
    if (!flushPending || !dom) return;
    flushPending = false;
    lastFlush = performance.now();
    if ((needFull && !rules && performance.now() - startedAt < 1500) || !dict) {
      // Labels are usually a moment away: wait for them rather than render everything twice.
      setTimeout(schedule, 100);
      return;
    }
    if (needFull) {
      needFull = false;
      dirty.clear();
      renderAll();
    } else if (dirty.size) {
      renderDirty();
    }
    renderCounts();
    scheduleClusters(); // markers moved, came or went
    if (alarmsDirty) renderAlarms();
    if (detailDirty) renderDetail();
    if (unitsDirty) {
      renderUnits();
      clearTimeout(unitsTimer);
      unitsTimer = setTimeout(loadUnits, 500); // statuses and task counts changed on the server
    }
    if (window.board.onFlush) window.board.onFlush(lastSeq);
  }

  // ---- alarms ---------------------------------------------------------------------------

  let audio = null;
  let soundOn = recall('board.sound') === 'on';

  function paintSound() {
    dom.sound.textContent = t(soundOn ? 'sound.on' : 'sound.off');
    dom.sound.dataset.sound = soundOn ? 'on' : 'off';
    dom.sound.setAttribute('aria-pressed', String(soundOn));
  }

  function toggleSound() {
    soundOn = !soundOn;
    store('board.sound', soundOn ? 'on' : 'off');
    if (soundOn && !audio && window.AudioContext) audio = new AudioContext(); // needs this click
    paintSound();
    if (soundOn) beep();
  }

  let lastBeep = 0;
  /** A short two-tone beep through WebAudio (off by default; at most one per second). */
  function beep() {
    if (!soundOn || !audio || Date.now() - lastBeep < 1000) return;
    lastBeep = Date.now();
    const t0 = audio.currentTime;
    for (const [i, freq] of [[0, 880], [1, 660]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, t0 + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.001, t0 + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0 + i * 0.18);
      osc.stop(t0 + i * 0.18 + 0.17);
    }
  }

  function alarmText(a) {
    const parts = [];
    if (a.type === 'DeadlineMissed' || a.team) {
      parts.push(t('alarm.missed', { team: teamName(a.team), kind: kindName(a.kind) }));
    }
    if (a.to_name || a.to_title) parts.push(t('alarm.escalated', { title: leaderTitle(a.level, a.to_title), name: a.to_name || '' }));
    if (Number.isFinite(a.late_by) && a.late_by >= 1) parts.push(t('alarm.late', { span: formatSpan(a.late_by * 1000) }));
    return parts.join(' · ');
  }

  /** Alarms grouped per incident and stage (the promise kind, or a manual escalation), as
   * Alertmanager groups alerts: one strip row per group, with its count and its teams. */
  function alarmGroups() {
    const groups = new Map();
    for (const a of alarms.values()) {
      if (!incidents.has(a.incident_id)) continue;
      const key = `${a.incident_id}:${a.kind || a.type}`;
      let g = groups.get(key);
      if (!g) {
        g = { key, incident_id: a.incident_id, kind: a.kind, members: [], latest: 0, at: NaN };
        groups.set(key, g);
      }
      g.members.push(a);
      if (a.seq > g.latest) {
        g.latest = a.seq;
        g.at = parseTime(a.at);
      }
    }
    for (const g of groups.values()) g.members.sort((a, b) => a.seq - b.seq);
    return Array.from(groups.values()).sort((a, b) => b.latest - a.latest);
  }

  function alarmGroupText(g) {
    const teams = [];
    for (const a of g.members) if (a.team && !teams.includes(a.team)) teams.push(a.team);
    const parts = [];
    if (g.kind === 'manual') parts.push(t('alarm.manual'));
    else parts.push(t('alarm.group', { kind: kindName(g.kind), teams: teams.map(teamName).join(t('list.sep')) }));
    // The highest step reached in the group names the leader it reached.
    let top = null;
    for (const a of g.members) if (a.to_name || a.to_title) top = a;
    if (top) parts.push(t('alarm.escalated', { title: leaderTitle(top.level, top.to_title), name: top.to_name || '' }));
    let late = NaN;
    for (const a of g.members) if (Number.isFinite(a.late_by) && !(a.late_by <= late)) late = a.late_by;
    if (Number.isFinite(late) && late >= 1) parts.push(t('alarm.late', { span: formatSpan(late * 1000) }));
    return parts.join(' · ');
  }

  const ALARM_ROWS = 3; // groups shown in the strip; the rest are counted behind them

  function renderAlarms() {
    alarmsDirty = false;
    const groups = alarmGroups();
    const items = groups.slice(0, ALARM_ROWS).map((g) => {
      const li = el('li', 'alarm');
      li.dataset.alarmSeq = String(g.members[0].seq);
      li.dataset.alarmSeqs = g.members.map((a) => a.seq).join(' ');
      li.dataset.alarmGroup = g.key;
      li.dataset.alarmCount = String(g.members.length);
      li.dataset.alarmIncident = String(g.incident_id);
      const inc = incidents.get(g.incident_id);
      const open = el('button', 'alarm-open');
      open.type = 'button';
      open.append(
        el('span', 'mono alarm-id', `#${g.incident_id}`),
        el('span', 'alarm-cat', inc ? name(labels.catalogue.get(inc.category), inc.category || '') : ''),
        el('span', 'alarm-text', alarmGroupText(g)),
      );
      if (g.members.length > 1) {
        const n = el('span', 'mono alarm-n', `×${g.members.length}`);
        n.title = t('alarm.count', { n: g.members.length });
        open.append(n);
      }
      open.append(el('span', 'mono alarm-at', formatClock(g.at)));
      const ack = el('button', 'alarm-ack', t('alarm.ack'));
      ack.type = 'button';
      li.append(open, ack);
      return li;
    });
    const notice = countyNotice();
    if (notice) items.unshift(notice);
    const behind = groups.length - (items.length - (notice ? 1 : 0));
    if (behind > 0) {
      const more = el('li', 'alarm-more', t('alarm.more', { n: behind }));
      more.dataset.alarmMore = String(behind);
      items.push(more);
    }
    let total = 0;
    for (const g of groups) total += g.members.length;
    dom.alarmList.replaceChildren(...items);
    dom.alarmCount.textContent = String(groups.length);
    dom.alarmCount.title = t('alarm.total', { groups: groups.length, n: total });
    dom.alarms.hidden = groups.length === 0 && !notice;
    document.body.classList.toggle('alarming', groups.length > 0);
  }

  /* County forwarding off (no webhook): the county matters on the board are not forwarded and the command
   * room must phone the departments. Said once in the strip, until the operator dismisses it; it comes
   * back only for a county matter that arrives after that. */
  let countyForwarding = true;

  function unforwarded() {
    const ids = [];
    if (countyForwarding) return ids;
    for (const inc of incidents.values()) {
      if (inc.delivery && inc.delivery.state === 'pending' && !inc.exercise) ids.push(inc.id);
    }
    return ids.sort((a, b) => a - b);
  }

  function countyNotice() {
    const ids = unforwarded();
    const seen = Number(recall('board.county-notice') || 0);
    if (!ids.length || ids[ids.length - 1] <= seen) return null;
    const li = el('li', 'alarm notice');
    li.dataset.notice = 'county';
    li.append(el('span', 'alarm-text', t('delivery.notice', { n: ids.length })));
    const ok = el('button', 'notice-ok', t('notice.dismiss'));
    ok.type = 'button';
    ok.addEventListener('click', () => {
      store('board.county-notice', String(ids[ids.length - 1]));
      alarmsDirty = true;
      schedule();
    });
    li.append(ok);
    return li;
  }

  /** Acknowledge every alarm of a strip row (its group). */
  async function acknowledgeGroup(seqs) {
    if (!operatorActor()) {
      flashOperator();
      return;
    }
    for (const seq of seqs) await acknowledgeAlarm(seq);
  }

  async function acknowledgeAlarm(seq) {
    const a = alarms.get(seq);
    if (!a) return;
    const actor = operatorActor();
    if (!actor) {
      flashOperator();
      return;
    }
    try {
      await post(`/api/v1/incidents/${a.incident_id}/alarms/${seq}/ack`, { actor });
      // The AlarmAcknowledged event clears it here and on every other board.
    } catch (err) {
      if (err.status === 404) {
        alarms.delete(seq); // the incident was finished, or the alarm is unknown: nothing to keep
        alarmsDirty = true;
        schedule();
      } else {
        console.warn('board: acknowledging the alarm failed', err);
      }
    }
  }

  // ---- the operator ---------------------------------------------------------------------

  function operatorName() {
    return (dom.operator.value || '').trim();
  }

  /** The `actor` sent with every action: "operator:<name>", or null when no name is set. */
  function operatorActor(team) {
    const who = operatorName();
    if (!who) return null;
    return team ? `operator:${who} for ${team}` : `operator:${who}`;
  }

  function flashOperator() {
    dom.operator.classList.add('needed');
    dom.operator.focus();
    setTimeout(() => dom.operator.classList.remove('needed'), 2500);
    if (detail.id !== null) showDetailMessage(t('action.need_operator'), true);
  }

  async function post(url, body) {
    const res = await api(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await res.json(); } catch (err) { data = null; }
    if (!res.ok) {
      const text = problemText(data, res.statusText || String(res.status));
      const error = new Error(text);
      error.status = res.status;
      error.detail = text;
      error.code = data && data.code;
      throw error;
    }
    return data;
  }

  /* A refusal's words in the board's language. The API answers every refusal as a problem document
   * (RFC 9457, docs/api.md) with a stable `code`: its label is problem.<code> in the i18n files; the
   * server's English `detail` is shown only for a code the files do not know. */
  function problemText(data, fallback) {
    const code = data && typeof data.code === 'string' ? data.code : '';
    if (!code || !dict || !Object.prototype.hasOwnProperty.call(dict, `problem.${code}`)) {
      return data && typeof data.detail === 'string' ? data.detail : fallback;
    }
    const current = data.current || {};
    const raw = current.state || current.status || '';
    const unitKey = `unit.${raw}`;
    let state = '';
    if (raw) state = Object.prototype.hasOwnProperty.call(dict, unitKey) ? t(`unit.${raw}`) : t(`status.${raw}`);
    const fields = Array.isArray(data.errors) ? data.errors.map((e) => e.field).join(', ') : '';
    return t(`problem.${code}`, { state, fields });
  }

  // ---- closing the loop: waiting for verification, extension requests, parked --------------------

  /* The three lanes come from GET /api/v1/lanes (the hub's open incidents), fetched at start and again
   * shortly after any event that can change them. Every action goes through the API under the signed-in
   * account, with the operator's name as `actor` like the detail panel's actions. */
  const CLOSING_EVENTS = new Set(['VerificationAwaited', 'IncidentVerified', 'ExtensionRequested', 'ParkingRequested',
    'RequestDecided', 'IncidentParked', 'IncidentResumed', 'IncidentClosed', 'IncidentCancelled', 'IncidentMerged',
    'DeadlineMissed']);
  let lanesTimer = null;
  let lanesShown = { verifying: [], extension_requests: [], parked: [] };

  function scheduleLanes() {
    clearTimeout(lanesTimer);
    lanesTimer = setTimeout(loadLanes, 150);
  }

  async function loadLanes() {
    if (!token) return;
    try {
      const res = await api('/api/v1/lanes', { headers: { accept: 'application/json' } });
      if (!res.ok) return;
      lanesShown = await res.json();
      renderLanes();
    } catch (err) {
      console.warn('board: the closing lanes could not be read', err);
    }
  }

  function laneItem(item, kind) {
    const inc = item.incident;
    const li = el('li', 'closing-item');
    li.dataset.incidentId = String(inc.id);
    if (item.request_id !== null && item.request_id !== undefined) li.dataset.requestId = String(item.request_id);
    const cat = name(labels.catalogue.get(inc.category), inc.category || '');
    li.append(el('span', 'what', `#${inc.id} ${cat} · ${name(labels.zones.get(inc.zone), inc.zone || '')}`));
    const closing = inc.closing;
    if (kind === 'verifying') {
      const check = closing.checks.filter((c) => c.kind === 'verify').pop();
      if (check) li.append(el('span', 'when', t('closing.due', { due: formatStamp(check.due_at) })));
      if (closing.reworks) li.append(el('span', 'when', t('closing.rework', { n: closing.reworks })));
      const last = closing.verifications[closing.verifications.length - 1];
      if (last && last.flags.length) li.append(el('span', 'flags', t('closing.flagged', { flags: last.flags.join('; ') })));
      li.append(reasonBox(), button('closing-pass', t('closing.pass')), button('closing-fail', t('closing.fail')));
    } else if (kind === 'extension_requests') {
      const r = closing.requests.find((x) => x.id === item.request_id);
      if (r) {
        li.append(el('span', 'what', `${name(labels.teams.get(r.team), r.team || '')}: ${r.reason}`));
        li.append(el('span', 'when', t('closing.until', { due: formatStamp(r.until) })));
      }
      li.append(reasonBox(), button('closing-approve', t('closing.approve')), button('closing-refuse', t('closing.refuse')));
    } else {
      const check = closing.checks.filter((c) => c.kind === 'review').pop();
      const r = closing.requests.filter((x) => x.kind === 'parking' && x.state === 'approved').pop();
      if (r) li.append(el('span', 'what', r.reason));
      if (check) li.append(el('span', check.state === 'missed' ? 'flags' : 'when', t('closing.review', { due: formatStamp(check.due_at) })));
      li.append(button('closing-resume', t('closing.resume')));
    }
    return li;
  }

  function reasonBox() {
    const input = el('input', 'closing-reason');
    input.type = 'text';
    input.maxLength = 200;
    input.placeholder = t('closing.reason');
    return input;
  }

  function button(cls, text) {
    const b = el('button', cls, text);
    b.type = 'button';
    return b;
  }

  function renderLanes() {
    for (const [kind, list, empty] of [['verifying', 'verifying-list', 'verifying-empty'],
      ['extension_requests', 'extensions-list', 'extensions-empty'], ['parked', 'parked-list', 'parked-empty']]) {
      const items = lanesShown[kind] || [];
      $(list).replaceChildren(...items.map((item) => laneItem(item, kind)));
      $(empty).hidden = items.length > 0;
    }
  }

  async function onClosingClick(ev) {
    const b = ev.target.closest('button');
    const li = ev.target.closest('li.closing-item');
    if (!b || !li) return;
    const actor = operatorActor();
    if (!actor) { flashOperator(); return; }
    const id = Number(li.dataset.incidentId);
    const reasonInput = li.querySelector('.closing-reason');
    const reason = reasonInput ? reasonInput.value.trim() : '';
    let url = null;
    let body = { actor };
    if (b.classList.contains('closing-pass')) {
      url = `/api/v1/incidents/${id}/verification`;
      body = { actor, passed: true };
    } else if (b.classList.contains('closing-fail') || b.classList.contains('closing-refuse')) {
      if (!reason) { showLaneMessage(li, t('closing.need_reason')); return; }
      url = b.classList.contains('closing-fail')
        ? `/api/v1/incidents/${id}/verification` : `/api/v1/incidents/${id}/requests/${li.dataset.requestId}/refuse`;
      body = b.classList.contains('closing-fail') ? { actor, passed: false, reason } : { actor, reason };
    } else if (b.classList.contains('closing-approve')) {
      url = `/api/v1/incidents/${id}/requests/${li.dataset.requestId}/approve`;
      body = reason ? { actor, reason } : { actor };
    } else if (b.classList.contains('closing-resume')) {
      url = `/api/v1/incidents/${id}/resume`;
    }
    if (!url) return;
    b.disabled = true;
    try {
      await post(url, body);
      scheduleLanes();
    } catch (err) {
      showLaneMessage(li, t('closing.failed', { detail: err.detail || err.message }));
      b.disabled = false;
    }
  }

  function showLaneMessage(li, text) {
    let m = li.querySelector('.message');
    if (!m) { m = el('span', 'message'); li.append(m); }
    m.textContent = text;
  }

  // ---- signing in ----------------------------------------------------------------------------

  /* The API and the feed need a bearer token (docs/security.md). The board signs in with the form
   * #signin (OAuth2 password flow at /api/v1/auth/token) and keeps the token for this tab only
   * (sessionStorage 'board.token'); every API call carries it, the feed offers it as a websocket
   * subprotocol. A 401 from the API, or a feed that keeps failing while /auth/me says 401, shows the form. */
  let token = sessionStorage.getItem('board.token');
  let account = null;

  function api(url, init = {}) {
    const headers = new Headers(init.headers || {});
    if (token) headers.set('Authorization', `Bearer ${token}`);
    return fetch(url, { ...init, headers }).then((res) => {
      if (res.status === 401) needSignIn();
      return res;
    });
  }

  function needSignIn() {
    token = null;
    sessionStorage.removeItem('board.token');
    const box = $('signin');
    if (!box || !box.hidden) return;
    box.hidden = false;
    setConnection('closed', t('signin.needed'));
    $('signin-user').focus();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const form = new URLSearchParams({ username: $('signin-user').value.trim(), password: $('signin-password').value });
    const error = $('signin-error');
    error.textContent = '';
    try {
      const res = await fetch('/api/v1/auth/token', { method: 'POST', body: form,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } });
      const data = await res.json().catch(() => null);
      if (!res.ok) {
        error.textContent = t('signin.refused', { detail: problemText(data, String(res.status)) });
        return;
      }
      token = data.access_token;
      sessionStorage.setItem('board.token', token);
      $('signin-password').value = '';
      $('signin').hidden = true;
      showAccount(data.account);
      loadRules();
      loadUnits();
      loadLanes();
      if (!ws) connect();
    } catch (err) {
      error.textContent = t('signin.refused', { detail: String(err.message || err) });
    }
  }

  function showAccount(found) {
    account = found || null;
    const who = $('account');
    if (!who) return;
    who.textContent = account ? `${account.display_name || account.name} · ${t(`role.account.${account.role}`)}` : '';
    $('signout').hidden = !account;
  }

  async function whoAmI() {
    if (!token) return needSignIn();
    const res = await api('/api/v1/auth/me', { headers: { accept: 'application/json' } });
    if (res.ok) showAccount((await res.json()).account);
  }

  async function signOut() {
    await api('/api/v1/auth/logout', { method: 'POST' }).catch(() => null);
    sessionStorage.removeItem('board.token');
    location.reload();
  }

  // ---- the detail panel -------------------------------------------------------------------

  const detail = { id: null, data: null, timeline: [], maxSeq: 0, explain: null, message: null, busy: false,
    fetchToken: 0, dueEls: [] };

  function openDetail(id) {
    if (!Number.isFinite(id)) return;
    const previous = views.get(detail.id);
    if (previous) previous.row.classList.remove('selected');
    detail.id = id;
    detail.data = null;
    detail.timeline = [];
    detail.maxSeq = 0;
    detail.explain = null;
    detail.message = null;
    const view = views.get(id);
    if (view) view.row.classList.add('selected');
    placeDetail();
    dom.detail.hidden = false;
    dom.detail.dataset.incident = String(id);
    document.body.classList.add('with-detail');
    writeUrl();
    refreshDetail();
    renderDetail();
  }

  /** The panel hangs below the top bar (whose height changes with the drill banner and wrapping). */
  function placeDetail() {
    const bar = document.querySelector('.topbar');
    if (bar) dom.detail.style.top = `${Math.round(bar.getBoundingClientRect().bottom)}px`;
  }

  function closeDetail() {
    const view = views.get(detail.id);
    if (view) view.row.classList.remove('selected');
    detail.id = null;
    detail.dueEls = [];
    dom.detail.hidden = true;
    delete dom.detail.dataset.incident;
    document.body.classList.remove('with-detail');
    writeUrl();
  }

  /** Fetch the incident with its timeline; events that arrive meanwhile are merged by seq. */
  async function refreshDetail() {
    const id = detail.id;
    const token = ++detail.fetchToken;
    try {
      const res = await api(`/api/v1/incidents/${id}`, { cache: 'no-store', headers: { accept: 'application/json' } });
      if (token !== detail.fetchToken || detail.id !== id) return;
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const data = await res.json();
      if (token !== detail.fetchToken || detail.id !== id) return;
      const bySeq = new Map();
      for (const e of data.timeline || []) bySeq.set(e.seq, e);
      for (const e of detail.timeline) bySeq.set(e.seq, e); // live events newer than the fetch
      detail.timeline = Array.from(bySeq.values()).sort((a, b) => a.seq - b.seq);
      detail.maxSeq = detail.timeline.length ? detail.timeline[detail.timeline.length - 1].seq : 0;
      detail.data = data;
    } catch (err) {
      detail.message = { text: String(err.message || err), error: true };
    }
    detailDirty = true;
    schedule();
  }

  function detailEvent(seq, type, data) {
    if (seq <= detail.maxSeq) return;
    detail.timeline.push({ seq, type, data });
    detail.maxSeq = seq;
    if (detail.data && (type === 'IncidentClosed' || type === 'IncidentCancelled')) {
      detail.data.status = data.incident_status;
    }
    detailDirty = true;
  }

  function showDetailMessage(text, error) {
    detail.message = { text, error };
    detailDirty = true;
    schedule();
  }

  function section(titleKey, ...children) {
    const s = el('section', 'd-section');
    s.append(el('h3', null, t(titleKey)), ...children);
    return s;
  }

  function dl(pairs) {
    const list = el('dl', 'd-pairs');
    for (const [key, value] of pairs) {
      if (value === null || value === undefined || value === '') continue;
      list.append(el('dt', null, t(key)));
      const dd = el('dd');
      if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
      list.append(dd);
    }
    return list;
  }

  function actionButton(action, team, text, extraCls) {
    const b = el('button', `d-action ${extraCls || ''}`.trim(), text);
    b.type = 'button';
    b.dataset.action = action;
    if (team) b.dataset.team = team;
    b.disabled = detail.busy;
    return b;
  }

  function eventSummary(e) {
    const d = e.data || {};
    switch (e.type) {
      case 'IncidentReported':
        return [name(labels.catalogue.get(d.category), d.category || ''), d.rule_id ? `${t('detail.rule')} ${d.rule_id}` : '']
          .filter(Boolean).join(' · ');
      case 'UnitsDispatched':
        return (d.units || []).map((u) => `${teamName(u.team)} (${t(`role.${u.role}`)})`).join('、');
      case 'UnitMoved':
        return `${teamName(d.team)}: ${t(`unit.${d.from_state}`)} → ${t(`unit.${d.to_state}`)}`;
      case 'IncidentCancelled':
        return d.reason || '';
      case 'NoteAdded':
        return d.text || '';
      case 'DeadlineMissed':
        return t('alarm.missed', { team: teamName(d.team), kind: kindName(d.kind) });
      case 'EscalationRaised':
        return `${teamName(d.team)} · ${kindName(d.kind)} → ${leaderTitle(d.level, d.to_title)} ${d.to_name || ''}`;
      case 'AlarmAcknowledged':
        return `#${d.alarm_seq}`;
      case 'OfficerAssigned':
        return `${teamName(d.team)} → ${officerName(d.officer)} (${t(`why.${d.reason}`)})`;
      case 'AssignmentWaiting':
        return t('alarm.waiting', {
          team: waitingTeams(d).map(teamName).join(', '),
          name: `${d.alerted_title || ''} ${d.alerted_name || ''}`.trim(),
        });
      case 'AssignmentReturned':
        return `${teamName(d.team)}: ${d.reason || ''}`;
      case 'AssignmentReassigned':
        return `${teamName(d.from_team)} → ${teamName(d.to_team)}`;
      case 'PriorityChanged':
        return `P${d.from_priority} → P${d.to_priority}`;
      case 'ReportAttached':
        return `${d.reporter || ''} ×${d.report_count}`;
      case 'ReportSplit':
        return `${d.report_id} → #${d.new_incident_id}`;
      case 'IncidentMerged':
        return `→ #${d.into_incident_id}`;
      case 'HandoverAttempted':
        return `${d.attempt}: ${d.ok ? 'OK' : d.error || d.status_code || ''}`;
      default:
        return '';
    }
  }

  function renderDetail() {
    detailDirty = false;
    if (detail.id === null) return;
    const id = detail.id;
    const live = incidents.get(id);
    const inc = live || (detail.data ? prepare(detail.data) : null);
    dom.detailTitle.replaceChildren(el('span', 'mono', `#${id}`));
    detail.dueEls = [];
    if (!inc) {
      dom.detailBody.replaceChildren(el('p', 'muted', t('detail.loading')));
      return;
    }
    dom.detail.dataset.status = inc.status;
    dom.detailTitle.append(' ', categoryNode(inc.category), ' ', statusNode(inc.status));
    if (inc.exercise) dom.detailTitle.append(' ', el('span', 'drill', t('drill.badge')));
    const open = !FINAL.has(inc.status);
    const body = [];

    if (detail.message) {
      const msg = el('p', `d-message ${detail.message.error ? 'error' : 'ok'}`, detail.message.text);
      msg.setAttribute('role', 'status');
      body.push(msg);
    }
    if (!open) body.push(el('p', 'd-finished', t('detail.finished')));

    // The report(s): an incident is one report today; the section lists what it carried.
    const desc = el('p', 'd-desc', inc.description || '');
    body.push(section('detail.report', desc, dl([
      ['detail.report_id', inc.report_id],
      ['detail.reported_at', formatStamp(inc.reported_at)],
      ['detail.occurred_at', inc.occurred_at ? formatStamp(inc.occurred_at) : null],
      ['filter.status', t(`status.${inc.status}`)],
      ['detail.priority', `P${inc.priority}`],
    ]), inc.reporter || inc.severity != null
      ? el('p', 'd-meta', [inc.reporter ? t('reporter', { name: inc.reporter }) : '',
        inc.severity != null ? t('severity', { n: inc.severity }) : ''].filter(Boolean).join(' · '))
      : ''));

    if (Array.isArray(inc.reports) && inc.reports.length) {
      const joined = el('ul', 'd-joined');
      for (const r of inc.reports) {
        const li = el('li');
        li.dataset.reportId = r.report_id;
        li.append(el('span', 'mono', formatClock(parseTime(r.attached_at))), el('span', 'note-author', r.reporter || ''),
          el('span', 'note-text', r.description || ''));
        if (open && r.merged_from == null) {
          const split = actionButton('split', null, t('action.split'), 'secondary');
          split.dataset.report = r.report_id;
          li.append(split);
        }
        joined.append(li);
      }
      body.push(section('detail.joined', joined));
    }

    const loc = inc.location;
    body.push(section('detail.location', dl([
      ['filter.zone', zonesNode(inc)],
      ['detail.location', loc ? `${(+loc.lat).toFixed(5)}, ${(+loc.lon).toFixed(5)}` : null],
    ])));

    const routing = inc.routing || {};
    const lead = inc.escalate_to && inc.escalate_to.name
      ? `${leaderTitle(inc.escalate_to.level || 'module_lead', inc.escalate_to.title)} ${inc.escalate_to.name}` : null;
    const explainBox = el('div', 'd-explain');
    if (detail.explain === 'loading') explainBox.append(el('p', 'muted', t('detail.explain_loading')));
    else if (detail.explain && detail.explain.error) explainBox.append(el('p', 'd-message error', detail.explain.error));
    else if (detail.explain) {
      const w = detail.explain.winner;
      if (!w) explainBox.append(el('p', 'muted', t('detail.no_rule')));
      else {
        const ul = el('ul', 'd-conditions');
        for (const c of w.conditions || []) {
          // The condition's name and verdict from the translation files; the server's English detail only
          // on the English board (a tooltip).
          const li = el('li', c.held ? 'held' : 'failed',
            t('cond.line', { mark: c.held ? '✓' : '✗', name: t(`cond.${c.name}`), verdict: t(c.held ? 'cond.held' : 'cond.failed') }));
          li.dataset.condition = c.name;
          if (lang === 'en') li.title = c.detail;
          ul.append(li);
        }
        explainBox.append(el('p', 'mono', `${w.rule} (${t('detail.precedence', { n: w.precedence })}, ${t('detail.specificity', { n: w.specificity })})`), ul);
      }
    }
    body.push(section('detail.routing', dl([
      ['detail.module', moduleNode(inc.module)],
      ['detail.rule', routing.rule_id || t('detail.no_rule')],
      ['detail.table_version', routing.table_version],
      ['detail.queue', routing.queue ? t(`stat.${routing.queue}`) : null],
      ['detail.escalate_to', lead],
    ]), actionButton('explain', null, t('detail.explain'), 'secondary'), explainBox));

    const rows = [];
    const t0 = now();
    for (const a of inc.assignments) {
      const item = el('li', `d-assignment state-${a.state}`);
      item.dataset.team = a.team;
      item.dataset.state = a.state;
      const headLine = el('div', 'd-a-head');
      headLine.append(teamChip(a));
      item.append(headLine);
      const dls = el('ul', 'd-deadlines');
      for (const d of a.deadlines) {
        const due = parseTime(d.due_at);
        const li = el('li', `dl-${d.state}`);
        li.append(el('span', 'd-kind', kindName(d.kind)), el('span', 'mono', formatDue(due)), el('span', 'd-dl-state', t(`dl.${d.state}`)));
        if (d.state === 'pending') {
          const span = el('span', 'due mono');
          detail.dueEls.push({ span, due, win: due - parseTime(a.dispatched_at) });
          li.append(span);
        }
        dls.append(li);
      }
      item.append(dls);
      if (open) {
        const acts = el('div', 'd-unit-actions');
        for (const action of UNIT_ACTIONS[a.state] || []) acts.append(actionButton(action, a.team, t(`action.${action}`)));
        if (UNIT_ACTIONS[a.state]) acts.append(officerPicker(a), actionButton('reassign', a.team, t('action.reassign')));
        item.append(acts);
      }
      rows.push(item);
    }
    const assignments = el('ul', 'd-assignments');
    assignments.append(...rows);
    body.push(section('detail.assignments', rows.length ? assignments : el('p', 'muted', t('none_dispatched'))));

    if (open) {
      const acts = el('div', 'd-actions');
      if (inc.status === 'resolved') acts.append(actionButton('close', null, t('action.close')));
      const reason = el('input', 'd-reason');
      reason.id = 'cancel-reason';
      reason.placeholder = t('action.cancel_reason');
      reason.maxLength = 500;
      acts.append(reason, actionButton('cancel', null, t('action.cancel'), 'danger'));
      const more = el('div', 'd-actions');
      more.append(teamPicker(inc), actionButton('add-team', null, t('action.add_team')));
      more.append(priorityPicker(inc), actionButton('priority', null, t('action.priority')));
      more.append(actionButton('escalate-now', null, t('action.escalate_now'), 'danger'));
      body.push(section('detail.actions', acts, more));
    }

    const notes = detail.timeline.filter((e) => e.type === 'NoteAdded');
    const noteList = el('ul', 'd-notes');
    for (const e of notes) {
      const li = el('li');
      li.append(el('span', 'mono', formatClock(parseTime(e.data.at))), el('span', 'note-author', e.data.author || ''),
        el('span', 'note-text', e.data.text || ''));
      noteList.append(li);
    }
    const noteInput = el('textarea', 'd-note-input');
    noteInput.id = 'note-text';
    noteInput.rows = 2;
    noteInput.maxLength = 4000;
    noteInput.placeholder = t('action.note_placeholder');
    body.push(section('detail.notes', notes.length ? noteList : el('p', 'muted', t('detail.no_notes')),
      noteInput, actionButton('note', null, t('action.note'))));

    const tl = el('ol', 'd-timeline');
    for (const e of detail.timeline.slice().reverse()) {
      const li = el('li', `ev ev-${e.type}`);
      li.dataset.seq = String(e.seq);
      li.append(el('span', 'mono ev-at', formatClock(parseTime(e.data && e.data.at))), el('span', 'ev-type', dict && dict[`ev.${e.type}`] ? t(`ev.${e.type}`) : e.type),
        el('span', 'ev-what', eventSummary(e)));
      const actor = e.data && (e.data.actor || e.data.author);
      if (actor) li.append(el('span', 'ev-actor', actor));
      tl.append(li);
    }
    body.push(section('detail.timeline', detail.data ? tl : el('p', 'muted', t('detail.loading'))));

    // Keep what the operator is typing across live re-renders.
    const typedNote = $('note-text') ? $('note-text').value : '';
    const typedReason = $('cancel-reason') ? $('cancel-reason').value : '';
    const picked = Array.from(dom.detailBody.querySelectorAll('select[id]'), (x) => [x.id, x.value]);
    const scroll = dom.detailBody.scrollTop;
    dom.detailBody.replaceChildren(...body.filter((x) => x !== ''));
    if ($('note-text')) $('note-text').value = typedNote;
    if ($('cancel-reason')) $('cancel-reason').value = typedReason;
    for (const [selectId, value] of picked) {
      const select = $(selectId);
      if (select && Array.from(select.options).some((o) => o.value === value)) select.value = value;
    }
    dom.detailBody.scrollTop = scroll;
    paintDetailTimers(t0);
  }

  /** The team's officers on duty, for handing an assignment to another (first: the best free one). */
  function officerPicker(a) {
    const select = el('select', 'd-officer');
    select.id = `officer-${a.team}`;
    select.append(new Option(t('action.best_free'), ''));
    for (const o of officers.values()) {
      if (o.team !== a.team || !o.on_duty || o.id === a.officer) continue;
      select.append(new Option(`${o.name} · ${t(`ustatus.${o.status}`)} · ${o.tasks}`, o.id));
    }
    return select;
  }

  function teamPicker(inc) {
    const select = el('select', 'd-team');
    select.id = 'add-team';
    const working = new Set(inc.assignments.filter((a) => UNIT_ACTIONS[a.state]).map((a) => a.team));
    for (const team of labels.teams.values()) if (!working.has(team.id)) select.append(new Option(name(team, team.id), team.id));
    return select;
  }

  function priorityPicker(inc) {
    const select = el('select', 'd-priority');
    select.id = 'priority';
    for (let p = 1; p <= 5; p++) {
      const option = new Option(`P${p}`, String(p));
      option.selected = p === inc.priority;
      select.append(option);
    }
    return select;
  }

  function paintDetailTimers(t0) {
    for (const d of detail.dueEls) {
      const left = d.due - t0;
      d.span.textContent = formatSpan(left);
      d.span.className = left < 0 ? 'due mono over' : left < amberMs(d.win) ? 'due mono warn' : 'due mono';
    }
  }

  async function onDetailClick(ev) {
    const button = ev.target.closest('button[data-action]');
    if (!button || button.disabled || detail.id === null) return;
    const id = detail.id;
    const action = button.dataset.action;
    const team = button.dataset.team || null;
    if (action === 'explain') return explainDetail();
    const actor = operatorActor(UNIT_ACTIONS_ALL.has(action) ? team : null);
    if (!actor) return flashOperator();
    let url;
    let body;
    if (UNIT_ACTIONS_ALL.has(action)) {
      url = `/api/v1/incidents/${id}/assignments/${encodeURIComponent(team)}/${action}`;
      body = { actor };
    } else if (action === 'close') {
      url = `/api/v1/incidents/${id}/close`;
      body = { actor };
    } else if (action === 'cancel') {
      const reason = ($('cancel-reason').value || '').trim();
      if (!reason) return showDetailMessage(t('action.need_reason'), true);
      url = `/api/v1/incidents/${id}/cancel`;
      body = { actor, reason };
    } else if (action === 'note') {
      const text = ($('note-text').value || '').trim();
      if (!text) return;
      url = `/api/v1/incidents/${id}/notes`;
      body = { author: actor, text };
    } else if (action === 'reassign') {
      const picked = $(`officer-${team}`) ? $(`officer-${team}`).value : '';
      url = `/api/v1/incidents/${id}/assignments/${encodeURIComponent(team)}/officer`;
      body = picked ? { actor, officer: picked } : { actor };
    } else if (action === 'add-team') {
      const picked = $('add-team') ? $('add-team').value : '';
      if (!picked) return;
      url = `/api/v1/incidents/${id}/teams`;
      body = { actor, team: picked };
    } else if (action === 'priority') {
      url = `/api/v1/incidents/${id}/priority`;
      body = { actor, priority: Number($('priority').value) };
    } else if (action === 'escalate-now') {
      url = `/api/v1/incidents/${id}/escalate`;
      body = { actor };
    } else if (action === 'split') {
      url = `/api/v1/incidents/${id}/split`;
      body = { actor, report_id: button.dataset.report };
    } else {
      return;
    }
    detail.busy = true;
    renderDetail();
    try {
      await post(url, body);
      if (action === 'note' && $('note-text')) $('note-text').value = '';
      if (action === 'cancel' && $('cancel-reason')) $('cancel-reason').value = '';
      detail.message = { text: t('action.done'), error: false };
    } catch (err) {
      detail.message = { text: t('action.failed', { status: err.status || '?', detail: err.detail || err.message }), error: true };
    } finally {
      detail.busy = false;
      if (detail.id === id) {
        detailDirty = true;
        schedule();
      }
    }
  }
  const UNIT_ACTIONS_ALL = new Set(['acknowledge', 'en-route', 'on-scene', 'resolve']);

  async function explainDetail() {
    const inc = incidents.get(detail.id) || detail.data;
    if (!inc) return;
    const q = new URLSearchParams();
    if (inc.reported_category || inc.category) q.set('category', inc.reported_category || inc.category);
    if (inc.description) q.set('description', inc.description.slice(0, 4000));
    if (inc.zone) q.set('zone', inc.zone);
    if (inc.location) {
      q.set('lat', String(inc.location.lat));
      q.set('lon', String(inc.location.lon));
    }
    if (inc.severity != null) q.set('severity', String(inc.severity));
    if (inc.reporter_kind) q.set('reporter_kind', inc.reporter_kind);
    if (inc.reported_at) q.set('at', inc.reported_at);
    detail.explain = 'loading';
    renderDetail();
    try {
      const res = await api(`/api/v1/rules/explain?${q}`, { headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      detail.explain = await res.json();
    } catch (err) {
      detail.explain = { error: String(err.message || err) };
    }
    detailDirty = true;
    schedule();
  }

  // ---- the map --------------------------------------------------------------------------

  const map = { proj: null, inv: null, kx: 1, scale: 1, zones: null, width: 1000, height: 600, tiles: null, tileKey: '' };
  const M_PER_DEG = 111320;

  async function loadZones() {
    try {
      const res = await api('/api/v1/rules/zones', { headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`zones: HTTP ${res.status}`);
      map.zones = await res.json();
    } catch (err) {
      console.warn('board: could not load the zones', err);
      return;
    }
    buildProjection();
    drawZones();
    needFull = true; // markers are placed by the new projection
    schedule();
  }

  /** Equirectangular projection of the zones' box (plus their radii and a margin) onto the viewBox. */
  function buildProjection() {
    const fc = map.zones;
    if (!fc || !fc.bbox) return;
    let [west, south, east, north] = fc.bbox;
    let pad = 0;
    for (const f of fc.features) if (f.properties && f.properties.radius_m) pad = Math.max(pad, f.properties.radius_m / M_PER_DEG);
    const lat0 = ((south + north) / 2) * (Math.PI / 180);
    const kx = Math.cos(lat0);
    const margin = Math.max(north - south, (east - west) * kx) * 0.08 + pad;
    south -= margin;
    north += margin;
    west -= margin / kx;
    east += margin / kx;
    const w = (east - west) * kx;
    const h = north - south;
    map.scale = map.width / w;
    map.height = Math.round(h * map.scale);
    map.proj = (lon, lat) => [(lon - west) * kx * map.scale, (north - lat) * map.scale];
    map.inv = (x, y) => [west + x / (kx * map.scale), north - y / map.scale];
    map.kx = kx;
    resetMapView();
  }

  /* Pan and zoom: the SVG's viewBox is the window onto the township. Markers, labels and strokes keep
   * their size on screen (CSS divides them by --k, the zoom factor); markers closer than CLUSTER_PX on
   * screen are drawn as one cluster with its count, which spreads into its markers as the map zooms in. */
  const mapView = { x: 0, y: 0, w: 1000, h: 600 };
  const MAX_ZOOM = 40;
  const CLUSTER_PX = 24;

  function resetMapView() {
    mapView.x = 0;
    mapView.y = 0;
    mapView.w = map.width;
    mapView.h = map.height;
    applyMapView();
  }

  function mapZoom() {
    return map.width / mapView.w;
  }

  function applyMapView() {
    // Keep some of the township in sight: the window never leaves the drawn box entirely.
    mapView.x = Math.min(Math.max(mapView.x, -mapView.w * 0.5), map.width - mapView.w * 0.5);
    mapView.y = Math.min(Math.max(mapView.y, -mapView.h * 0.5), map.height - mapView.h * 0.5);
    dom.map.setAttribute('viewBox', `${mapView.x.toFixed(2)} ${mapView.y.toFixed(2)} ${mapView.w.toFixed(2)} ${mapView.h.toFixed(2)}`);
    // --u: map units per screen pixel, so CSS sizes markers and labels in screen pixels at every zoom.
    dom.map.style.setProperty('--u', (1 / pxPerUnit()).toFixed(5));
    dom.map.dataset.zoom = mapZoom().toFixed(2);
    if (lastOfficers) renderOfficers(lastOfficers);
    scheduleClusters();
    drawTiles();
  }

  /* The optional tile layer: only a township's own tile server (DISPATCHER_MAP_TILES_URL, an XYZ template of
   * Web Mercator tiles); none by default, so nothing is fetched. Each tile is placed by projecting its
   * corners, which at a township's scale (a few km) matches the zones' projection to well under a pixel. */
  const MAX_TILES = 64;

  function tileLon(x, z) { return (x / 2 ** z) * 360 - 180; }
  function tileLat(y, z) { return (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / 2 ** z))) * 180) / Math.PI; }

  function drawTiles() {
    const layer = $('map-tiles');
    if (!layer) return;
    if (!map.tiles || !map.proj) {
      if (layer.firstChild) layer.replaceChildren();
      map.tileKey = '';
      return;
    }
    // The zoom whose tile pixels are closest to screen pixels.
    const pxPerDegLon = pxPerUnit() * map.kx * map.scale;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2((pxPerDegLon * 360) / 256))));
    const [west, north] = map.inv(mapView.x, mapView.y);
    const [east, south] = map.inv(mapView.x + mapView.w, mapView.y + mapView.h);
    const n = 2 ** z;
    const tx = (lon) => Math.floor(((lon + 180) / 360) * n);
    const ty = (lat) => {
      const r = (Math.max(-85, Math.min(85, lat)) * Math.PI) / 180;
      return Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n);
    };
    const x0 = Math.max(0, tx(west));
    const x1 = Math.min(n - 1, tx(east));
    const y0 = Math.max(0, ty(north));
    const y1 = Math.min(n - 1, ty(south));
    const key = `${map.tiles} ${z} ${x0}-${x1} ${y0}-${y1}`;
    if (key === map.tileKey) return;
    map.tileKey = key;
    const images = [];
    for (let x = x0; x <= x1; x += 1) {
      for (let y = y0; y <= y1; y += 1) {
        if (images.length >= MAX_TILES) break;
        const [left, top] = map.proj(tileLon(x, z), tileLat(y, z));
        const [right, bottom] = map.proj(tileLon(x + 1, z), tileLat(y + 1, z));
        const img = svg('image', { x: left.toFixed(2), y: top.toFixed(2), width: (right - left).toFixed(2),
          height: (bottom - top).toFixed(2), preserveAspectRatio: 'none', class: 'map-tile' });
        img.setAttribute('href', map.tiles.replace('{z}', String(z)).replace('{x}', String(x)).replace('{y}', String(y)));
        img.dataset.tile = `${z}/${x}/${y}`;
        images.push(img);
      }
    }
    layer.replaceChildren(...images);
  }

  /** Zoom by `factor` (>1: in) keeping the map point under (clientX, clientY) where it is. */
  function zoomMap(factor, clientX, clientY) {
    const rect = dom.map.getBoundingClientRect();
    const cx = clientX === undefined ? rect.left + rect.width / 2 : clientX;
    const cy = clientY === undefined ? rect.top + rect.height / 2 : clientY;
    const at = clientToMap(cx, cy);
    const w = Math.min(map.width, Math.max(map.width / MAX_ZOOM, mapView.w / factor));
    const ratio = w / mapView.w;
    mapView.x = at.x - (at.x - mapView.x) * ratio;
    mapView.y = at.y - (at.y - mapView.y) * ratio;
    mapView.w = w;
    mapView.h *= ratio;
    applyMapView();
  }

  function clientToMap(clientX, clientY) {
    const ctm = dom.map.getScreenCTM();
    if (!ctm) return { x: mapView.x + mapView.w / 2, y: mapView.y + mapView.h / 2 };
    const pt = dom.map.createSVGPoint();
    pt.x = clientX;
    pt.y = clientY;
    return pt.matrixTransform(ctm.inverse());
  }

  /** Screen pixels per map unit at the current zoom (the SVG fits its viewBox, "meet"). */
  function pxPerUnit() {
    const rect = dom.map.getBoundingClientRect();
    return Math.min(rect.width / mapView.w, rect.height / mapView.h) || 1;
  }

  const drag = { on: false, moved: false, x: 0, y: 0 };

  function bindMap() {
    dom.map.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      zoomMap(ev.deltaY < 0 ? 1.25 : 1 / 1.25, ev.clientX, ev.clientY);
    }, { passive: false });
    dom.map.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0) return;
      Object.assign(drag, { on: true, moved: false, x: ev.clientX, y: ev.clientY });
    });
    window.addEventListener('pointermove', (ev) => {
      if (!drag.on) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      drag.moved = true;
      const k = pxPerUnit();
      mapView.x -= dx / k;
      mapView.y -= dy / k;
      drag.x = ev.clientX;
      drag.y = ev.clientY;
      applyMapView();
    });
    window.addEventListener('pointerup', () => { drag.on = false; });
    if (window.ResizeObserver) new ResizeObserver(() => { if (map.proj) applyMapView(); }).observe(dom.map);
    for (const [id, act] of [['map-zoom-in', () => zoomMap(2)], ['map-zoom-out', () => zoomMap(0.5)], ['map-reset', resetMapView]]) {
      const button = $(id);
      if (button) button.addEventListener('click', act);
    }
    dom.mapClusters.addEventListener('click', (ev) => {
      const c = ev.target.closest('[data-cluster-size]');
      if (!c || drag.moved) return;
      // Zoom in on the cluster until its markers part (a few steps at most).
      const box = c.getBoundingClientRect();
      zoomMap(3, box.left + box.width / 2, box.top + box.height / 2);
    });
  }

  let clustersPending = false;

  function scheduleClusters() {
    if (clustersPending) return;
    clustersPending = true;
    dom.mapClusters.dataset.pending = 'true'; // cleared once the clusters match the view (tests wait on it)
    requestAnimationFrame(clusterMarkers);
  }

  /** Group the visible markers closer than CLUSTER_PX on screen (greedy, in id order, over a grid). */
  function clusterMarkers() {
    clustersPending = false;
    delete dom.mapClusters.dataset.pending;
    if (!map.proj) return;
    const radius = CLUSTER_PX / pxPerUnit();
    const points = [];
    for (const view of views.values()) {
      const m = view.marker;
      if (!m || !view.visible || !m.isConnected) continue;
      points.push({ m, id: view.id, x: +m.getAttribute('cx'), y: +m.getAttribute('cy') });
    }
    points.sort((a, b) => a.id - b.id);
    const grid = new Map();
    const cellOf = (v) => Math.floor(v / radius);
    for (const p of points) {
      const key = `${cellOf(p.x)},${cellOf(p.y)}`;
      if (!grid.has(key)) grid.set(key, []);
      grid.get(key).push(p);
    }
    const taken = new Set();
    const nodes = [];
    for (const p of points) {
      if (taken.has(p)) continue;
      taken.add(p);
      const members = [p];
      for (let dx = -1; dx <= 1; dx += 1) {
        for (let dy = -1; dy <= 1; dy += 1) {
          for (const q of grid.get(`${cellOf(p.x) + dx},${cellOf(p.y) + dy}`) || []) {
            if (!taken.has(q) && Math.hypot(q.x - p.x, q.y - p.y) <= radius) {
              taken.add(q);
              members.push(q);
            }
          }
        }
      }
      if (members.length === 1) {
        p.m.classList.remove('clustered');
        continue;
      }
      let x = 0;
      let y = 0;
      let flagged = false;
      for (const q of members) {
        q.m.classList.add('clustered');
        x += q.x;
        y += q.y;
        flagged = flagged || q.m.classList.contains('flagged');
      }
      const g = svg('g', { class: `cluster${flagged ? ' flagged' : ''}`,
        transform: `translate(${(x / members.length).toFixed(1)} ${(y / members.length).toFixed(1)})` });
      g.dataset.clusterSize = String(members.length);
      g.dataset.clusterIds = members.map((q) => q.id).sort((a, b) => a - b).join(' ');
      const count = svg('text', { class: 'cluster-n' });
      count.textContent = String(members.length);
      const title = svg('title');
      title.textContent = t('map.cluster', { n: members.length, ids: members.map((q) => `#${q.id}`).join(' ') });
      g.append(svg('circle', { class: 'cluster-dot' }), count, title);
      nodes.push(g);
    }
    dom.mapClusters.replaceChildren(...nodes);
  }

  function zoneCentre(z) {
    if (!z) return null;
    const g = z.geometry;
    if (g.type === 'Point') return g.coordinates;
    const outer = g.type === 'MultiPolygon' ? g.coordinates[0][0] : g.coordinates[0];
    const ring = outer.slice(0, -1);
    const lon = ring.reduce((s, p) => s + p[0], 0) / ring.length;
    const lat = ring.reduce((s, p) => s + p[1], 0) / ring.length;
    return [lon, lat];
  }

  function drawZones() {
    if (!map.proj) return;
    const polys = [];
    const circles = [];
    const texts = [];
    for (const f of map.zones.features) {
      const p = f.properties || {};
      const g = f.geometry;
      let labelAt;
      let below = null; // a point zone's other place for its name, under its circle (see unstackLabels)
      if (g.type === 'Point') {
        const [x, y] = map.proj(g.coordinates[0], g.coordinates[1]);
        const r = ((p.radius_m || 50) / M_PER_DEG) * map.scale;
        circles.push(svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1), class: 'zone zone-point', 'data-zone': f.id }));
        labelAt = [x, y - r, '0', '-0.4em'];
        below = (y + r).toFixed(1);
      } else {
        const rings = g.type === 'MultiPolygon' ? g.coordinates.flat(1) : g.coordinates;
        const d = rings.map((ring) => `M${ring.map(([lon, lat]) => map.proj(lon, lat).map((v) => v.toFixed(1)).join(',')).join('L')}Z`).join('');
        polys.push(svg('path', { d, class: 'zone zone-polygon', 'data-zone': f.id }));
        const ring = rings[0];
        const xs = ring.map(([lon, lat]) => map.proj(lon, lat));
        labelAt = [Math.min(...xs.map((q) => q[0])), Math.min(...xs.map((q) => q[1])), '0.5em', '1.3em'];
      }
      // Offsets in em: the label keeps its place beside the zone at every zoom (its size is in screen pixels).
      const text = svg('text', { x: labelAt[0].toFixed(1), y: labelAt[1].toFixed(1), dx: labelAt[2], dy: labelAt[3],
        class: `zone-label ${g.type === 'Point' ? 'centre' : ''}` });
      text.textContent = lang === 'en' ? p.name_en || p.name : p.name;
      if (below !== null) text.dataset.below = below;
      texts.push(text);
    }
    dom.mapZones.replaceChildren(...polys, ...circles, ...texts);
    unstackLabels(texts);
  }

  /** A point zone's label that covers one drawn before it goes under its circle instead of above (two zones a
   * street apart, such as a market beside a junction, would otherwise print their names over each other). */
  function unstackLabels(texts) {
    const boxes = [];
    const overlaps = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
    for (const text of texts) {
      let box = text.getBBox();
      if (text.dataset.below && boxes.some((b) => overlaps(box, b))) {
        text.setAttribute('y', text.dataset.below);
        text.setAttribute('dy', '1.1em');
        box = text.getBBox();
      }
      boxes.push(box);
    }
  }

  /** Where an incident goes on the map: its location, else near its zone's centre (marked approx). */
  function markerPosition(inc) {
    if (!map.proj) return null;
    if (inc.location && Number.isFinite(+inc.location.lat) && Number.isFinite(+inc.location.lon)) {
      return { xy: map.proj(+inc.location.lon, +inc.location.lat), approx: false };
    }
    const zid = inc.zones[0] || inc.zone;
    const feature = map.zones && zid ? map.zones.features.find((f) => f.id === zid) : null;
    const c = zoneCentre(feature);
    if (!c) return null;
    const [x, y] = map.proj(c[0], c[1]);
    const angle = inc.id * 2.39996; // golden angle: neighbours spread around the centre
    const dist = 10 + 7 * Math.sqrt(inc.id % 40);
    return { xy: [x + dist * Math.cos(angle), y + dist * Math.sin(angle)], approx: true };
  }

  function placeMarker(view, inc, info) {
    const pos = markerPosition(inc);
    if (!pos) {
      if (view.marker) view.marker.remove();
      view.marker = null;
      return;
    }
    let m = view.marker;
    if (!m) {
      m = svg('circle', { r: 13, class: 'marker' });
      m.dataset.markerId = String(inc.id);
      m.append(svg('title'));
      view.marker = m;
    }
    // Only what changed is written: any write to the SVG repaints the whole map.
    const cx = pos.xy[0].toFixed(1);
    const cy = pos.xy[1].toFixed(1);
    if (m.getAttribute('cx') !== cx) m.setAttribute('cx', cx);
    if (m.getAttribute('cy') !== cy) m.setAttribute('cy', cy);
    if (m.dataset.status !== inc.status) m.dataset.status = inc.status;
    if (m.classList.contains('approx') !== pos.approx) m.classList.toggle('approx', pos.approx);
    if (m.classList.contains('flagged') !== info.flag) m.classList.toggle('flagged', info.flag);
    if (m.classList.contains('filtered') === view.visible) m.classList.toggle('filtered', !view.visible);
    const cat = name(labels.catalogue.get(inc.category), inc.category || '');
    setText(m.firstChild, `#${inc.id} ${cat} · ${t(`status.${inc.status}`)}${pos.approx ? ` (${t('map.approx')})` : ''}`);
    if (m.parentNode !== dom.mapMarkers) dom.mapMarkers.append(m);
  }

  /** Hook for the roster (being built in main): draw officers as small triangles. Each item:
   *  {id, name, team, lat, lon}. Call window.board.renderOfficers(list) with the whole list. */
  let lastOfficers = null;

  function renderOfficers(list) {
    lastOfficers = list || [];
    if (!map.proj) return;
    const size = 1 / pxPerUnit(); // the same size on screen at every zoom
    const nodes = [];
    for (const o of list || []) {
      if (!Number.isFinite(+o.lat) || !Number.isFinite(+o.lon)) continue;
      const [x, y] = map.proj(+o.lon, +o.lat);
      const tri = svg('path', { d: 'M0,-8l7,12h-14z', class: 'officer',
        transform: `translate(${x.toFixed(1)} ${y.toFixed(1)}) scale(${size.toFixed(4)})` });
      tri.dataset.officerId = String(o.id);
      if (o.team) tri.dataset.team = o.team;
      const title = svg('title');
      title.textContent = `${o.name || o.id}${o.team ? ` · ${teamName(o.team)}` : ''}`;
      tri.append(title);
      nodes.push(tri);
    }
    dom.mapOfficers.replaceChildren(...nodes);
  }

  // ---- teams and officers ---------------------------------------------------------------

  function officerName(id) {
    const o = officers.get(id);
    return o ? o.name : id;
  }

  let unitsTimer = null;

  /** The roster's officers with duty, status, position and tasks; refreshed every 10 s and after changes. */
  async function loadUnits() {
    clearTimeout(unitsTimer);
    try {
      const res = await api('/api/v1/units', { cache: 'no-store', headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`units: HTTP ${res.status}`);
      const body = await res.json();
      const before = Array.from(officers.values(), (o) => `${o.id}=${o.name}`).join();
      officers.clear();
      for (const o of body.data || []) officers.set(o.id, o);
      const namesChanged = before !== Array.from(officers.values(), (o) => `${o.id}=${o.name}`).join();
      renderOfficers(body.data.filter((o) => o.location).map((o) => ({ id: o.id, name: o.name, team: o.team,
        lat: o.location.lat, lon: o.location.lon })));
      renderUnits();
      if (namesChanged) {
        needFull = true; // chips name their officers: redraw once when the names change, not per load
        detailDirty = true;
        schedule();
      } else if (detail.id !== null) {
        detailDirty = true; // the officer pickers list who is free now
        schedule();
      }
    } catch (err) {
      console.warn('board: could not load the units', err);
    } finally {
      unitsTimer = setTimeout(loadUnits, 10000);
    }
  }

  /** Who is on duty per team, each officer's status and tasks; the assignments waiting for someone. */
  function renderUnits() {
    unitsDirty = false;
    if (!dom.unitTeams) return;
    const waiting = new Map();
    for (const inc of incidents.values()) {
      for (const a of inc.assignments) {
        if (a.waiting && UNIT_ACTIONS[a.state]) waiting.set(a.team, (waiting.get(a.team) || []).concat(inc.id));
      }
    }
    let waitingTotal = 0;
    const blocks = [];
    const teams = new Map();
    for (const o of officers.values()) teams.set(o.team, (teams.get(o.team) || []).concat(o));
    // Teams with work waiting first, then those with someone on duty; the empty ones last.
    const weight = ([teamId, list]) => (waiting.get(teamId) || []).length * 1000 + list.filter((o) => o.on_duty).length;
    const sorted = Array.from(teams).sort((a, b) => weight(b) - weight(a) || a[0].localeCompare(b[0]));
    for (const [teamId, list] of sorted) {
      const onDuty = list.filter((o) => o.on_duty);
      const block = el('div', 'unit-team');
      block.dataset.team = teamId;
      const head = el('div', 'unit-head');
      head.append(el('span', 'unit-team-name', teamName(teamId)), el('span', 'mono muted', `${onDuty.length}/${list.length}`));
      const waits = waiting.get(teamId) || [];
      waitingTotal += waits.length;
      if (waits.length) {
        const w = el('span', 'unit-waiting', t('units.waiting', { n: waits.length }));
        w.title = waits.map((i) => `#${i}`).join(' ');
        head.append(w);
      }
      block.append(head);
      const row = el('div', 'unit-list');
      for (const o of onDuty) {
        const u = el('span', `unit ustatus-${o.status}`);
        u.dataset.officer = o.id;
        u.dataset.status = o.status;
        u.append(el('span', 'unit-name', o.name));
        if (o.tasks) u.append(el('span', 'unit-tasks mono', String(o.tasks)));
        if (o.posted_at === 'five-way' || (o.posted_at && labels.zones.has(o.posted_at))) {
          u.append(el('span', 'unit-post', name(labels.zones.get(o.posted_at), o.posted_at)));
        }
        u.title = `${o.post} · ${t(`ustatus.${o.status}`)} · ${t('units.tasks', { n: o.tasks })}`;
        row.append(u);
      }
      if (!onDuty.length) row.append(el('span', 'muted', t('units.none_on_duty')));
      block.append(row);
      blocks.push(block);
    }
    dom.unitTeams.replaceChildren(...blocks);
    if (dom.waitingCount) dom.waitingCount.textContent = String(waitingTotal);
  }

  // ---- the one-second tick --------------------------------------------------------------

  function tick() {
    const t0 = now();
    dom.clock.textContent = formatClock(t0);
    dom.clock.title = `${formatDate(t0)} ${t('clock.zone', { zone: timeZone() })}`
      + (skew.offset ? ` ${t('clock.skew', { s: `${skew.offset > 0 ? '+' : ''}${(skew.offset / 1000).toFixed(1)}` })}` : '');
    for (const view of views.values()) paintTimer(view, t0);
    if (detail.dueEls.length) paintDetailTimers(t0);
    if (fresh.size) clearFresh();
    // Wake just after the next whole second of the (server) clock.
    setTimeout(tick, 1000 - (t0 % 1000) + 15);
  }

  // ---- the feed connection --------------------------------------------------------------

  let ws = null;
  let attempt = 0;
  let openedAt = 0;
  let retryTimer = null;
  let retryAt = 0;

  function setConnection(state, text) {
    dom.connection.dataset.state = state;
    dom.connectionText.textContent = text;
    document.body.classList.toggle('stale', state !== 'open');
  }

  /* The server sends a heartbeat after 15 s without events; silence for longer than this means
   * the link died without a close (a cable pulled, a NAT timeout): drop it and resume. */
  const SILENCE_MS = 40000;
  let lastFrameAt = Date.now();
  setInterval(() => {
    if (ws && ws.readyState === WebSocket.OPEN && Date.now() - lastFrameAt > SILENCE_MS) {
      const dead = ws;
      ws = null;
      dead.close(4000, 'silent feed');
      reconnectLater(null);
    }
  }, 5000);

  function feedUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const since = lastSeq === null ? '' : `?since=${lastSeq}`;
    return `${scheme}//${location.host}/ws/board${since}`;
  }

  function connect() {
    retryTimer = null;
    let socket;
    try {
      if (!token) {
        needSignIn();
        return;
      }
      socket = new WebSocket(feedUrl(), ['dispatcher.bearer', `dispatcher.bearer.${token}`]);
    } catch (err) {
      console.warn('board: cannot open the feed', err);
      reconnectLater(null);
      return;
    }
    ws = socket;
    socket.onopen = () => {
      if (ws !== socket) return;
      openedAt = Date.now();
      lastFrameAt = openedAt;
      setConnection('open', t('conn.open'));
      dom.connection.title = t('conn.since', { at: formatClock(Date.now()) });
    };
    socket.onmessage = (ev) => {
      if (ws !== socket) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn('board: unreadable frame', err);
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      lastFrameAt = Date.now();
      if (msg.kind === 'snapshot' || msg.kind === 'snapshot_page') {
        onSnapshotFrame(socket, msg);
      } else if (msg.kind === 'event') {
        onEvent(msg);
      }
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      ws = null;
      if (ev.code === 4401) { needSignIn(); return; } // the token was revoked, signed out or the account disabled
      if (!openedAt && token) whoAmI(); // refused at the handshake: is the session still good?
      if (!token) return; // signing in reconnects
      reconnectLater(ev);
    };
    socket.onerror = () => { /* a close follows */ };
  }

  function reconnectLater(ev) {
    if (openedAt && Date.now() - openedAt >= STABLE_MS) attempt = 0;
    openedAt = 0;
    let delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt += 1;
    if (ev && ev.code === 4008) delay = 250; // dropped for lagging: resume at once from lastSeq
    retryAt = Date.now() + delay;
    dom.connection.title = t('conn.retry', { code: ev ? ev.code : '—', at: formatClock(retryAt), seq: lastSeq ?? '—' });
    setConnection('closed', t('conn.reconnecting', { s: Math.round(delay / 1000) }));
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  /** Start over from a fresh snapshot (only when the feed was seen to skip a seq). */
  function resync() {
    lastSeq = null;
    const old = ws;
    ws = null;
    if (old) old.close(1000, 'resync');
    clearTimeout(retryTimer);
    setConnection('closed', t('conn.resyncing'));
    retryTimer = setTimeout(connect, 100);
  }

  // ---- start -------------------------------------------------------------------------------

  window.board = {
    lastSeq: () => lastSeq,
    incidents: () => Array.from(incidents.values()),
    alarms: () => Array.from(alarms.values()),
    openDetail: (id) => openDetail(Number(id)),
    renderOfficers: (list) => renderOfficers(list),
    /** Test and benchmark hook: close the feed as a network cut would (the board resumes by itself). */
    dropFeed: () => {
      if (ws) ws.close(4000, 'dropped by the page');
    },
    officers: () => Array.from(officers.values()),
    loadUnits: () => loadUnits(),
    loadLanes: () => loadLanes(),
    onFlush: null,
  };

  let startedAt = 0;

  function start() {
    startedAt = performance.now();
    bindDom();
    dom.operator.value = recall('board.operator') || '';
    dom.operator.addEventListener('change', () => store('board.operator', operatorName() || null));
    dom.operator.addEventListener('input', () => store('board.operator', operatorName() || null));
    dom.sound.addEventListener('click', toggleSound);
    dom.langToggle.addEventListener('click', () => {
      loadLang(lang === 'en' ? 'zh-CN' : 'en').then(writeUrl);
    });
    $('filters').addEventListener('change', onFilterChange);
    $('filter-clear').addEventListener('click', clearFilters);
    $('incidents').addEventListener('click', (ev) => {
      const row = ev.target.closest('.row[data-incident-id]');
      if (row) openDetail(Number(row.dataset.incidentId));
    });
    $('incidents').addEventListener('keydown', (ev) => {
      const row = ev.target.closest('.row[data-incident-id]');
      if (row && (ev.key === 'Enter' || ev.key === ' ')) {
        ev.preventDefault();
        openDetail(Number(row.dataset.incidentId));
      }
    });
    bindMap();
    dom.mapMarkers.addEventListener('click', (ev) => {
      if (drag.moved) return; // the end of a pan, not a click
      const m = ev.target.closest('[data-marker-id]');
      if (m) openDetail(Number(m.dataset.markerId));
    });
    dom.alarmList.addEventListener('click', (ev) => {
      const li = ev.target.closest('li[data-alarm-seq]');
      if (!li) return;
      if (ev.target.closest('.alarm-ack')) acknowledgeGroup((li.dataset.alarmSeqs || li.dataset.alarmSeq).split(' ').map(Number));
      else openDetail(Number(li.dataset.alarmIncident));
    });
    $('detail-close').addEventListener('click', closeDetail);
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', signOut);
    dom.detailBody.addEventListener('click', onDetailClick);
    $('closing').addEventListener('click', onClosingClick);
    window.addEventListener('resize', () => { if (detail.id !== null) placeDetail(); });
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && detail.id !== null) closeDetail();
    });
    setConnection('closed', '…');
    loadLang(lang).then(() => {
      setConnection(dom.connection.dataset.state, t(dom.connection.dataset.state === 'open' ? 'conn.open' : 'conn.connecting'));
      const wanted = Number(params.get('incident'));
      if (wanted > 0) openDetail(wanted);
    });
    if (token) {
      whoAmI();
      loadRules();
      connect();
      loadUnits();
      loadLanes();
    } else {
      needSignIn();
    }
    schedule();
    tick();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
