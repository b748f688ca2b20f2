/* The /reports page: a leader picks a period, reads the briefing document the dispatcher renders
 * (GET /api/v1/reports/briefing), follows any linked figure to the incidents behind it
 * (GET /api/v1/reports/incidents), reads the assessment's scores (GET /api/v1/assessment) and follows a
 * score to the lines and incidents that made it, and downloads the same document as XLSX. The page holds no data of
 * its own; every call carries the bearer token kept for this tab (sessionStorage 'board.token', shared
 * with the board). Labels come from /static/i18n/<lang>.json (Chinese by default, ?lang=en). */
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const lang = params.get('lang') === 'en' ? 'en' : 'zh-CN';
  let labels = {};
  let token = sessionStorage.getItem('board.token');
  let shown = null; // the period whose document is on the page
  let asked = 0; // how many periods were asked for: an answer to an earlier one is not shown over a later one

  /** The last whole month by the browser's calendar ("2026-11" in December): what /reports opens when no period
   * is given. A month still running would count every incident due later in it as open past its deadline. */
  function lastMonth() {
    const now = new Date();
    const last = new Date(now.getFullYear(), now.getMonth() - 1, 1);
    return `${last.getFullYear()}-${String(last.getMonth() + 1).padStart(2, '0')}`;
  }

  function t(key, values = {}) {
    const text = labels[key] || key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
  }

  async function loadLabels() {
    try {
      const res = await fetch(`/static/i18n/${lang}.json`, { headers: { accept: 'application/json' } });
      if (res.ok) labels = await res.json();
    } catch (err) { labels = {}; }
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.title = t('reports.title');
  }

  function status(text, error = false) {
    const el = $('status');
    el.textContent = text;
    el.classList.toggle('error', error);
  }

  function needSignIn() {
    token = null;
    sessionStorage.removeItem('board.token');
    $('signin').hidden = false;
    $('signin-user').focus();
  }

  async function api(url) {
    if (!token) { needSignIn(); throw new Error(t('signin.needed')); }
    const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    if (res.status === 401) { needSignIn(); throw new Error(t('signin.needed')); }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      const detail = body && typeof body.detail === 'string' ? body.detail : res.status;
      throw new Error(t('reports.failed', { detail }));
    }
    return res;
  }

  async function signIn(ev) {
    ev.preventDefault();
    const form = new URLSearchParams({ username: $('signin-user').value.trim(), password: $('signin-password').value });
    $('signin-error').textContent = '';
    const res = await fetch('/api/v1/auth/token', { method: 'POST', body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } });
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      $('signin-error').textContent = t('signin.refused', { detail: data && typeof data.detail === 'string' ? data.detail : res.status });
      return;
    }
    token = data.access_token;
    sessionStorage.setItem('board.token', token);
    $('signin-password').value = '';
    $('signin').hidden = true;
    if ($('period').value) open();
  }

  async function open(ev) {
    if (ev) ev.preventDefault();
    const period = $('period').value.trim();
    const mine = ++asked;
    status(t('reports.loading', { period }));
    $('behind').hidden = true;
    try {
      const res = await api(`/api/v1/reports/briefing?period=${encodeURIComponent(period)}&lang=${lang}`);
      const fragment = await res.text();
      if (mine !== asked) return; // another period was asked for meanwhile
      // The fragment is the dispatcher's own rendering (names escaped there); it carries no script.
      $('document').innerHTML = fragment;
      shown = period;
      $('xlsx').disabled = false;
      const url = new URL(location.href);
      url.searchParams.set('period', period);
      history.replaceState(null, '', url);
      status(t('reports.shown', { period }));
    } catch (err) {
      if (mine === asked) status(String(err.message || err), true);
      return;
    }
    await loadAssessment(period, mine);
  }

  // -- the assessment: scores (post, team, module), each with the lines and incidents behind it ------------
  const KINDS = ['posts', 'teams', 'modules'];
  let scores = {}; // kind -> unit -> score, of the period shown

  function cell(tr, value) {
    const td = document.createElement('td');
    if (value instanceof Node) td.append(value); else td.textContent = value;
    tr.append(td);
    return td;
  }

  async function loadAssessment(period, mine) {
    $('assessment').hidden = true;
    $('score').hidden = true;
    let data;
    try {
      data = await (await api(`/api/v1/assessment?period=${encodeURIComponent(period)}&lang=${lang}`)).json();
    } catch (err) {
      return; // the briefing stays readable without the scores (a role that may not read them)
    }
    if (mine !== asked) return;
    scores = {};
    const tables = [];
    const lines = []; // filled once every kind's names are known (a module's lines name its teams)
    for (const kind of KINDS) {
      scores[kind] = {};
      const table = document.createElement('table');
      table.dataset.kind = kind;
      const caption = document.createElement('caption');
      caption.textContent = t(`reports.kind.${kind}`);
      const head = document.createElement('tr');
      for (const key of ['reports.unit', 'reports.score', 'reports.lines']) {
        const th = document.createElement('th');
        th.textContent = t(key);
        head.append(th);
      }
      const body = document.createElement('tbody');
      for (const s of data[kind]) {
        scores[kind][s.unit] = s;
        const tr = document.createElement('tr');
        const name = cell(tr, s.name || s.unit);
        name.className = 'name';
        name.title = s.unit; // the id, for who needs it
        const link = document.createElement('a');
        link.href = '#';
        link.dataset.score = kind;
        link.dataset.unit = s.unit;
        link.textContent = String(s.score);
        cell(tr, link);
        lines.push([cell(tr, ''), s.lines]);
        body.append(tr);
      }
      const thead = document.createElement('thead');
      thead.append(head);
      table.append(caption, thead, body);
      tables.push(table);
    }
    for (const [td, of] of lines) td.textContent = of.map((l) => `${ruleText(l.rule)} ×${l.count}`).join('; ');
    $('assessment-tables').replaceChildren(...tables);
    $('assessment-version').textContent = t('reports.scoring', { version: data.table_version });
    $('assessment').hidden = false;
  }

  // A line's rule in words (逾期结案 · 1 级), its id kept in data-rule: post_points.<outcome>.p<n>,
  // team_points.missed_acknowledgement.p<n>, team_points.returned, module_score.<mean|sum>.<team>, special_bonus.<id>.
  function ruleText(rule) {
    const parts = rule.split('.');
    const [head, what, tail] = parts;
    if ((head === 'post_points' || head === 'team_points') && labels[`reports.rule.${what}`]) {
      const level = tail && /^p\d$/.test(tail) ? ` · ${t('reports.rule.priority', { n: tail.slice(1) })}` : '';
      return t(`reports.rule.${what}`) + level;
    }
    if (head === 'module_score' && parts.length >= 3) {
      const team = parts.slice(2).join('.');
      const named = scores.teams && scores.teams[team];
      return t('reports.rule.from_team', { team: (named && named.name) || team });
    }
    if (head === 'special_bonus') return t('reports.rule.special_bonus', { id: what });
    return rule;
  }

  function showScore(kind, unit) {
    const s = scores[kind] && scores[kind][unit];
    if (!s) return;
    const rows = $('score-lines');
    rows.replaceChildren();
    for (const line of s.lines) {
      for (const id of line.incidents.length ? line.incidents : [null]) {
        const tr = document.createElement('tr');
        if (id !== null) tr.dataset.incident = String(id);
        tr.dataset.rule = line.rule;
        cell(tr, ruleText(line.rule)).title = line.rule;
        cell(tr, String(line.count));
        cell(tr, String(line.points_each));
        cell(tr, String(line.points));
        cell(tr, id === null ? '–' : `#${id}`);
        rows.append(tr);
      }
    }
    $('score-title').textContent = t('reports.score_of', { unit: s.name || unit, score: s.score, base: s.base });
    $('score').hidden = false;
    $('score').scrollIntoView();
  }

  // The township's civil time (北京时间), to the minute: what a leader reads, not an ISO instant in UTC.
  const beijing = new Intl.DateTimeFormat('sv-SE', {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  });

  function when(iso) {
    return iso ? beijing.format(new Date(iso)) : '–';
  }

  async function follow(link) {
    const query = new URLSearchParams({ period: shown, by: link.dataset.by, figure: link.dataset.figure, lang });
    if (link.dataset.unit !== undefined) query.set('unit', link.dataset.unit);
    try {
      const data = await (await api(`/api/v1/reports/incidents?${query}`)).json();
      const rows = $('behind-rows');
      rows.replaceChildren();
      for (const line of data.incidents) {
        const tr = document.createElement('tr');
        tr.dataset.incident = String(line.incident_id);
        const values = [`#${line.incident_id}`, line.unit_name || line.unit || '–', labels[`status.${line.status}`] || line.status,
          when(line.reported_at), when(line.due_at), when(line.closed_at)];
        for (const value of values) {
          const td = document.createElement('td');
          td.textContent = value;
          tr.append(td);
        }
        rows.append(tr);
      }
      $('behind-title').textContent = t('reports.behind', {
        unit: data.unit_name || data.unit || t('reports.no_unit'), figure: t(`reports.figure.${data.figure}`), count: data.incidents.length,
      });
      $('behind').hidden = false;
      $('behind').scrollIntoView();
    } catch (err) {
      status(String(err.message || err), true);
    }
  }

  async function download() {
    try {
      const res = await api(`/api/v1/reports/briefing?period=${encodeURIComponent(shown)}&format=xlsx`);
      const blob = await res.blob();
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `briefing-${shown}.xlsx`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    } catch (err) {
      status(String(err.message || err), true);
    }
  }

  document.addEventListener('DOMContentLoaded', async () => {
    await loadLabels();
    $('period-form').addEventListener('submit', open);
    $('signin-form').addEventListener('submit', signIn);
    $('xlsx').addEventListener('click', download);
    $('document').addEventListener('click', (ev) => {
      const link = ev.target.closest('a[data-figure]');
      if (!link) return;
      ev.preventDefault();
      follow(link);
    });
    $('assessment').addEventListener('click', (ev) => {
      const link = ev.target.closest('a[data-score]');
      if (!link) return;
      ev.preventDefault();
      showScore(link.dataset.score, link.dataset.unit);
    });
    // Without ?period= the page opens the last whole month: a leader sees its briefing, not an empty page.
    $('period').placeholder = lastMonth();
    $('period').value = params.get('period') || lastMonth();
    if (!token) needSignIn();
    else if ($('period').value) open();
  });
})();
