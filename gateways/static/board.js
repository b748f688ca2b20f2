/* Live board for the township command room.
 *
 * Model: one Map of open incidents (id -> incident in the REST shape, plus a few board-only
 * fields prefixed with "_"), kept current from /ws/board (a snapshot, then every event once, in
 * seq order). View: one row element per incident in one of three lanes (main list, triage, admission).
 * Events only mark incidents dirty; a flush (next animation frame) rebuilds just those rows and
 * moves them to their sorted place. A one-second tick rewrites only the countdown cells.
 *
 * All report text (description, reporter, notes, labels) goes in through textContent.
 */
'use strict';

(() => {
  // ---- constants ------------------------------------------------------------------------

  const STATUS = {
    reported: ['已上报', 'reported'],
    dispatched: ['已派单', 'dispatched'],
    acknowledged: ['已接单', 'acknowledged'],
    en_route: ['在途', 'en route'],
    on_scene: ['到场处置', 'on scene'],
    resolved: ['已办结', 'resolved'],
    closed: ['已关闭', 'closed'],
    cancelled: ['已撤销', 'cancelled'],
  };
  const UNIT_STATE = {
    dispatched: ['待接单', 'dispatched'],
    acknowledged: ['已接单', 'acknowledged'],
    en_route: ['在途', 'en route'],
    on_scene: ['到场', 'on scene'],
    resolved: ['办结', 'resolved'],
    cancelled: ['撤销', 'cancelled'],
  };
  const ROLE = { lead: ['牵头', 'lead'], support: ['配合', 'support'] };
  const KIND = { ack: ['接单', 'ack'], arrive: ['到场', 'arrive'], resolve: ['办结', 'resolve'] };
  const QUEUES = new Set(['triage', 'admission']);
  const FINAL = new Set(['closed', 'cancelled']);
  /** The unit states that keep each promise (mirrors the server's KEPT_BY). */
  const KEPT_BY = {
    ack: new Set(['acknowledged', 'en_route', 'on_scene', 'resolved']),
    arrive: new Set(['on_scene', 'resolved']),
    resolve: new Set(['resolved']),
  };
  const BULK = 64; // more dirty rows than this in one flush: re-sort the lanes wholesale
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
  const STABLE_MS = 5000; // a connection open this long resets the backoff

  // ---- state ----------------------------------------------------------------------------

  /** @type {Map<number, object>} open incidents by id */
  const incidents = new Map();
  /** @type {Map<number, object>} row views by incident id */
  const views = new Map();
  const order = { main: [], triage: [], admission: [] };
  let lastSeq = null;
  let rules = null;
  const labels = { teams: new Map(), modules: new Map(), zones: new Map(), catalogue: new Map(), departments: new Map() };

  const dirty = new Set();
  let needFull = true;
  let flushPending = false;

  // ---- DOM lookup ---------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  let dom = null;

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
      township: $('township-name'),
      townshipEn: $('township-name-en'),
      version: $('rules-version'),
    };
  }

  // ---- time -----------------------------------------------------------------------------

  /* The countdowns run against the server's clock. Every timestamp the server sends (an
   * event's "at", the HTTP Date header) is a lower bound of the server's "now" when it
   * arrives, so the largest (server time - local time) seen in the last ten minutes estimates
   * the skew; replayed old events only give looser bounds and never win. The samples are kept
   * as a sliding-window maximum (a deque of decreasing values). */
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

  function formatClock(ms) {
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function formatDate(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  }

  // ---- labels ---------------------------------------------------------------------------

  function applyRules(data) {
    rules = data;
    for (const key of Object.keys(labels)) labels[key].clear();
    for (const t of data.teams || []) labels.teams.set(t.id, t);
    for (const m of data.modules || []) labels.modules.set(m.id, m);
    for (const z of data.zones || []) labels.zones.set(z.id, z);
    for (const c of data.catalogue || []) labels.catalogue.set(c.id, c);
    for (const d of data.county_departments || []) labels.departments.set(d.id, d);
    const tw = data.township || {};
    dom.township.textContent = tw.name || tw.id || '乡镇指挥室';
    dom.townshipEn.textContent = tw.name_en || '';
    document.title = `${tw.name || '指挥室'} · 指挥室态势`;
    dom.version.textContent = data.version || '?';
    for (const inc of incidents.values()) {
      if (!inc.escalate_to) inc.escalate_to = moduleLead(inc.module);
    }
    needFull = true;
    schedule();
  }

  let rulesFetching = false;
  let rulesFetchedAt = 0;

  async function loadRules() {
    if (rulesFetching) return;
    rulesFetching = true;
    rulesFetchedAt = Date.now();
    try {
      const res = await fetch('/api/v1/rules', { cache: 'no-store', headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`rules: HTTP ${res.status}`);
      noteServerTime(Date.parse(res.headers.get('date') || ''));
      applyRules(await res.json());
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
    return m && m.lead ? { name: m.lead.name, title: m.lead.title } : null;
  }

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
        if (d.state === 'missed' && inc.escalate_to) {
          addEscalation(inc, { team: a.team, kind: d.kind, level: 'module_lead',
            to_name: inc.escalate_to.name, to_title: inc.escalate_to.title });
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
    incidents.clear();
    for (const raw of msg.incidents || []) {
      if (!raw || FINAL.has(raw.status)) continue;
      incidents.set(raw.id, prepare(raw));
    }
    lastSeq = typeof msg.seq === 'number' ? msg.seq : 0;
    needFull = true;
    dirty.clear();
    schedule();
  }

  /* Notes live in the event log, not in the snapshot: a row shows the latest note added while
   * this board is open; GET /api/v1/incidents/{id} has the whole timeline. */

  function findAssignment(inc, team) {
    return inc.assignments.find((a) => a.team === team) || null;
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
          description: d.description,
          zone: d.zones && d.zones.length ? d.zones[0] : null,
          zones: d.zones || [],
          location: d.lat != null && d.lon != null ? { lat: d.lat, lon: d.lon } : null,
          severity: d.severity ?? null,
          reporter: d.reporter ?? null,
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
        }));
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
          const assignment = { team: u.team, role: u.role, state: 'dispatched',
            dispatched_at: d.at, updated_at: d.at, deadlines };
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
        if (!inc) return false;
        incidents.delete(id);
        return true;
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
        return false;
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
    if (applyEvent(msg.type, data, seq)) dirty.add(data.incident_id);
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

  function derive(inc) {
    let flag = inc._escalations.length > 0;
    let due = Infinity;
    let dueKind = null;
    let dueTeam = null;
    for (const a of inc.assignments) {
      for (const dl of a.deadlines) {
        if (dl.state === 'missed') flag = true;
        else if (dl.state === 'pending') {
          if (dl._ms === undefined) dl._ms = parseTime(dl.due_at);
          if (dl._ms < due) {
            due = dl._ms;
            dueKind = dl.kind;
            dueTeam = a.team;
          }
        }
      }
    }
    const q = inc.routing && inc.routing.queue;
    const lane = QUEUES.has(q) && inc.assignments.length === 0 ? q : 'main';
    const pri = Number.isFinite(inc.priority) ? inc.priority : 9;
    if (inc._rep === undefined) inc._rep = parseTime(inc.reported_at);
    return { flag, due, dueKind, dueTeam, lane, pri, rep: Number.isFinite(inc._rep) ? inc._rep : 0 };
  }

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

  // ---- DOM building -----------------------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** Chinese text with the English in small type (and as the tooltip). */
  function bilingual(zh, en, cls) {
    const span = el('span', cls || 'bi');
    span.append(el('span', 'zh', zh));
    if (en && en !== zh) {
      span.append(el('small', 'en', en));
      span.title = en;
    }
    return span;
  }

  function categoryNode(id) {
    const c = labels.catalogue.get(id);
    if (c) return bilingual(c.name, c.name_en);
    const span = el('span', 'bi unknown');
    span.append(el('span', 'zh mono', id || '—'), el('small', 'en', '未登记类别 · not in catalogue'));
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
      wrap.append(z ? bilingual(z.name, z.name_en, 'bi zone') : el('span', 'bi zone mono', zid));
    }
    return wrap;
  }

  function statusNode(status) {
    const [zh, en] = STATUS[status] || [status, ''];
    return bilingual(zh, en, `bi status status-${status}`);
  }

  function moduleNode(id) {
    const m = labels.modules.get(id);
    return m ? bilingual(m.name, m.name_en) : el('span', 'mono', id || '—');
  }

  function teamChip(a) {
    const t = labels.teams.get(a.team);
    const chip = el('span', `chip role-${a.role} state-${a.state}`);
    chip.dataset.team = a.team;
    chip.dataset.state = a.state;
    chip.dataset.role = a.role;
    const missed = a.deadlines.filter((d) => d.state === 'missed');
    if (missed.length) chip.classList.add('missed');
    chip.append(el('span', 'chip-name', t ? t.name : a.team));
    const [roleZh, roleEn] = ROLE[a.role] || [a.role, a.role];
    const [stZh, stEn] = UNIT_STATE[a.state] || [a.state, a.state];
    chip.append(el('span', 'chip-meta', `${roleZh}·${stZh}`));
    for (const d of missed) chip.append(el('span', 'chip-miss', `超时${(KIND[d.kind] || [d.kind])[0]}`));
    const lines = [
      `${t ? `${t.name_en} (${t.department})` : a.team}`,
      `${roleEn} · ${stEn}`,
    ];
    for (const d of a.deadlines) {
      const k = (KIND[d.kind] || [d.kind, d.kind])[1];
      const due = parseTime(d.due_at);
      let extra = '';
      if (d.state === 'pending' && Number.isFinite(due)) extra = ` (due ${formatClock(due)})`;
      else if (d.state === 'missed' && Number.isFinite(d._late_by)) extra = ` (late ${Math.round(d._late_by)} s)`;
      lines.push(`${k}: ${d.state}${extra}`);
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
      const badge = el('span', 'esc-badge', `已升级 → ${e.to_title || ''} ${e.to_name || ''}`.trim());
      badge.dataset.escalated = 'true';
      badge.title = 'Escalated: ' + causes.map((c) => {
        const t = labels.teams.get(c.team);
        return `${t ? t.name_en : c.team} missed ${c.kind} (${c.level})`;
      }).join('; ');
      nodes.push(badge);
    }
    if (!nodes.length && inc.assignments.some((a) => a.deadlines.some((d) => d.state === 'missed'))) {
      nodes.push(el('span', 'esc-badge', '超时 missed'));
    }
    return nodes;
  }

  function descriptionNodes(inc) {
    const nodes = escalationNodes(inc);
    const desc = el('div', 'desc', inc.description || '');
    desc.title = inc.description || '';
    nodes.push(desc);
    const extra = [];
    if (inc.reporter) extra.push(el('span', 'reporter', `报告人 ${inc.reporter}`));
    if (inc.severity != null) extra.push(el('span', 'sev', `严重度 ${inc.severity}`));
    if (extra.length) {
      const line = el('div', 'meta');
      line.append(...extra);
      nodes.push(line);
    }
    if (inc._note) {
      const note = el('div', 'note');
      note.append(el('span', 'note-tag', '备注'));
      if (inc._note.author) note.append(el('span', 'note-author', `${inc._note.author}：`));
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
    if (inc.exercise) {
      const badge = el('span', 'drill', '演练 DRILL');
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
        const t = labels.teams.get(info.dueTeam);
        const [kZh, kEn] = KIND[info.dueKind] || [info.dueKind, info.dueKind];
        const sub = el('small', 'due-what', `${kZh} · ${t ? t.name : info.dueTeam}`);
        sub.title = `${kEn} · ${t ? t.name_en : info.dueTeam} · due ${formatClock(info.due)}`;
        dueCell.append(dueEl, sub);
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
        chip.append(el('span', 'zh', `移交 → ${dept ? dept.name : handover}`));
        if (dept) chip.title = `handed over to ${dept.name_en}`;
        chips.append(chip);
      } else if (!inc.assignments.length) {
        chips.append(el('span', 'muted', '未派单 · none'));
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
  function paintTimer(view, t) {
    let text;
    let cls;
    if (view.dueEl) {
      const left = view.due - t;
      text = formatSpan(left);
      cls = left < 0 ? 'due mono over' : left < 60000 ? 'due mono warn' : 'due mono';
      if (text !== view.text) view.dueEl.textContent = text;
      if (cls !== view.cls) {
        view.dueEl.className = cls;
        view.row.classList.toggle('overdue', left < 0);
      }
    } else if (view.waitEl) {
      text = formatSpan(Math.max(0, t - view.rep));
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
    const view = { id: inc.id, row, lane: 'main', flag: false, pri: 9, due: Infinity, rep: 0 };
    views.set(inc.id, view);
    return view;
  }

  function update(view, inc) {
    const info = derive(inc);
    view.flag = info.flag;
    view.pri = info.pri;
    view.due = info.due;
    view.rep = info.rep;
    const oldLane = view.lane;
    view.lane = info.lane;
    fillRow(view, inc, info);
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
    const t = Date.now();
    for (const [row, until] of fresh) {
      if (until <= t) {
        row.classList.remove('fresh');
        fresh.delete(row);
      }
    }
  }

  function renderAll() {
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
        if (view) {
          detach(view, view.lane);
          view.row.remove();
          fresh.delete(view.row);
          views.delete(id);
        }
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
    const n = (lane) => order[lane].length;
    dom.openCount.textContent = String(incidents.size);
    let flagged = 0;
    for (const v of order.main) if (v.flag) flagged += 1; else break; // flagged rows sort first
    dom.escalatedCount.textContent = String(flagged);
    dom.escalatedCount.parentElement.classList.toggle('hot', flagged > 0);
    dom.triageCount.textContent = String(n('triage'));
    dom.admissionCount.textContent = String(n('admission'));
    for (const lane of Object.keys(order)) dom.empty[lane].hidden = n(lane) > 0;
    dom.lastSeq.textContent = lastSeq === null ? '–' : String(lastSeq);
    let drills = 0;
    for (const inc of incidents.values()) if (inc.exercise) drills += 1;
    const banner = document.getElementById('drill-banner');
    if (banner) {
      banner.hidden = drills === 0;
      banner.textContent = `演练进行中 · drill in progress: ${drills} exercise incident(s) on this board`;
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
    if (needFull && !rules && performance.now() - startedAt < 1500) {
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
  }

  // ---- the one-second tick --------------------------------------------------------------

  function tick() {
    const t = now();
    dom.clock.textContent = formatClock(t);
    dom.clock.title = formatDate(t) + (skew.offset ? ` (server clock, local ${skew.offset > 0 ? '+' : ''}${(skew.offset / 1000).toFixed(1)} s)` : '');
    for (const view of views.values()) paintTimer(view, t);
    if (fresh.size) clearFresh();
    // Wake just after the next whole second of the (server) clock.
    setTimeout(tick, 1000 - (t % 1000) + 15);
  }

  // ---- the feed connection --------------------------------------------------------------

  let ws = null;
  let attempt = 0;
  let openedAt = 0;
  let retryTimer = null;
  let retryAt = 0;

  function setConnection(state, text, en) {
    dom.connection.dataset.state = state;
    dom.connectionText.replaceChildren(document.createTextNode(text + ' '), el('small', 'en', en));
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
      socket = new WebSocket(feedUrl());
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
      setConnection('open', '已连接', 'connected');
      dom.connection.title = `ws connected at ${formatClock(Date.now())}`;
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
      if (msg.kind === 'snapshot') {
        onSnapshot(msg);
      } else if (msg.kind === 'event') {
        onEvent(msg);
      }
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      ws = null;
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
    const why = ev ? `closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})` : 'failed';
    dom.connection.title = `ws ${why}; retry at ${formatClock(retryAt)} with since=${lastSeq ?? '(snapshot)'}`;
    setConnection('closed', '重连中', `reconnecting in ${Math.round(delay / 1000)}s`);
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
    setConnection('closed', '重新同步', 'resyncing');
    retryTimer = setTimeout(connect, 100);
  }

  // ---- start -------------------------------------------------------------------------------

  window.board = {
    lastSeq: () => lastSeq,
    incidents: () => Array.from(incidents.values()),
  };

  let startedAt = 0;

  function start() {
    startedAt = performance.now();
    bindDom();
    setConnection('closed', '连接中', 'connecting');
    loadRules();
    connect();
    schedule();
    tick();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
