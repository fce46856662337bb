/*
 * traffic_shift status page: reads the JSON API of the location that
 * serves it, about once a second while the tab is visible, and on a
 * location with "write=on" offers a few changes (docs/dashboard.md).
 */

'use strict';

(function () {

var BASE = new URL('./', document.currentScript.src).href;
var PERIOD = 1000;
var KEEP = 60;              /* samples per chart: about a minute */

var state = {
  write: false,
  paused: false,
  timer: null,
  busy: false,
  skew: 0,                  /* server clock minus ours, ms */
  upstreams: {},            /* GET /upstreams */
  health: {},               /* GET /health */
  healthEtag: null,
  rollouts: {},             /* NAME -> GET /upstreams/NAME/rollout */
  prev: {},                 /* upstream/pool -> last counters */
  series: {},               /* upstream/pool -> {rate, errors, p99} */
  cards: {},                /* NAME -> DOM refs */
  serverCards: {},
  polls: 0
};

/* --- small DOM helpers ------------------------------------------------ */

function el(tag, attrs) {
  var e = document.createElement(tag), k, i, c;
  for (k in attrs || {}) {
    if (k === 'text') {
      e.textContent = attrs[k];
    } else if (k === 'cls') {
      e.className = attrs[k];
    } else if (k === 'on') {
      e.addEventListener('click', attrs[k]);
    } else if (attrs[k] !== null && attrs[k] !== undefined) {
      e.setAttribute(k, attrs[k]);
    }
  }
  for (i = 2; i < arguments.length; i++) {
    c = arguments[i];
    if (c === null || c === undefined) { continue; }
    e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

function svg(tag, attrs) {
  var e = document.createElementNS('http://www.w3.org/2000/svg', tag), k;
  for (k in attrs || {}) { e.setAttribute(k, attrs[k]); }
  return e;
}

function setText(e, text) {
  text = String(text);
  if (e.textContent !== text) { e.textContent = text; }
}

var uid = 0;
function nextId(prefix) { uid += 1; return prefix + '-' + uid; }

function fmtPct(v) {
  return (Math.round(v * 100) / 100) + '%';
}

function fmtNum(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) { return '–'; }
  return v.toFixed(digits);
}

function fmtAgo(iso) {
  if (!iso) { return 'never'; }
  var t = Date.parse(iso);
  if (isNaN(t)) { return iso; }
  var s = Math.round((Date.now() + state.skew - t) / 1000);
  if (s < 0) { s = 0; }
  if (s < 90) { return s + ' s ago'; }
  if (s < 5400) { return Math.round(s / 60) + ' min ago'; }
  if (s < 172800) { return Math.round(s / 3600) + ' h ago'; }
  return Math.round(s / 86400) + ' days ago';
}

var SOURCES = {
  config: 'from the configuration',
  api: 'through the API',
  state: 'restored from the state file'
};

/* --- talking to the API ----------------------------------------------- */

function api(path, opts) {
  opts = opts || {};
  var headers = { 'Accept': 'application/json' };
  var k;
  for (k in opts.headers || {}) { headers[k] = opts.headers[k]; }
  return fetch(BASE + path, {
    method: opts.method || 'GET',
    headers: headers,
    body: opts.body,
    cache: 'no-store',
    credentials: 'same-origin',
    redirect: 'error'
  }).then(function (res) {
    var date = Date.parse(res.headers.get('Date') || '');
    if (!isNaN(date)) { state.skew = date - Date.now(); }
    var type = res.headers.get('Content-Type') || '';
    var body = type.indexOf('json') >= 0 ? res.json() : res.text();
    return body.then(function (data) {
      return { status: res.status, etag: res.headers.get('ETag'),
               data: data };
    });
  });
}

function enc(name) { return encodeURIComponent(name); }

/* --- /metrics: counters to rates -------------------------------------- */

function parseMetrics(text) {
  var m = {}, lines = text.split('\n'), i, line, match, labels, lre, lm, key;
  var re = /^([a-z_]+)\{([^}]*)\} (\S+)$/;
  for (i = 0; i < lines.length; i++) {
    line = lines[i];
    if (!line || line.charAt(0) === '#') { continue; }
    match = re.exec(line);
    if (!match) { continue; }
    labels = {};
    lre = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    while ((lm = lre.exec(match[2])) !== null) {
      labels[lm[1]] = lm[2].replace(/\\(.)/g, '$1');
    }
    key = labels.upstream + '/' + (labels.pool || '');
    if (!m[key]) { m[key] = { buckets: [] }; }
    switch (match[1]) {
    case 'traffic_shift_requests_total':
      m[key].requests = +match[3]; break;
    case 'traffic_shift_upstream_errors_total':
      m[key].errors = +match[3]; break;
    case 'traffic_shift_upstream_response_duration_seconds_bucket':
      m[key].buckets.push([labels.le === '+Inf' ? Infinity : +labels.le,
                           +match[3]]);
      break;
    case 'traffic_shift_upstream_response_duration_seconds_count':
      m[key].count = +match[3]; break;
    case 'traffic_shift_rollout_state':
      if (+match[3] === 1) { m[key].rollout = labels.state; }
      break;
    }
  }
  return m;
}

/* p99 in ms of the responses between two snapshots of the histogram */
function quantile(now, before, q) {
  var total = now.count - before.count, i, le, c, prevLe = 0, prevC = 0;
  if (!(total > 0)) { return null; }
  var want = q * total;
  for (i = 0; i < now.buckets.length; i++) {
    le = now.buckets[i][0];
    c = now.buckets[i][1] - (before.buckets[i] ? before.buckets[i][1] : 0);
    if (c >= want) {
      if (le === Infinity) { return prevLe * 1000; }
      if (c === prevC) { return le * 1000; }
      return (prevLe + (le - prevLe) * (want - prevC) / (c - prevC)) * 1000;
    }
    prevLe = le;
    prevC = c;
  }
  return prevLe * 1000;
}

function sample(metrics, when) {
  var key, cur, prev, s, dt, rate, ratio, p99, dcount;
  for (key in metrics) {
    cur = metrics[key];
    if (cur.requests === undefined) { continue; }
    prev = state.prev[key];
    s = state.series[key];
    if (!s) { s = state.series[key] = { rate: [], errors: [], p99: [] }; }
    rate = ratio = p99 = null;
    if (prev && cur.requests >= prev.requests
        && (cur.count || 0) >= (prev.count || 0))
    {
      dt = (when - prev.when) / 1000;
      if (dt > 0) { rate = (cur.requests - prev.requests) / dt; }
      dcount = (cur.count || 0) - (prev.count || 0);
      if (dcount > 0) {
        ratio = ((cur.errors || 0) - (prev.errors || 0)) / dcount;
        p99 = quantile(cur, prev, 0.99);
      }
    }
    if (prev) {
      s.rate.push(rate); s.errors.push(ratio); s.p99.push(p99);
      if (s.rate.length > KEEP) {
        s.rate.shift(); s.errors.shift(); s.p99.shift();
      }
    }
    cur.when = when;
    state.prev[key] = cur;
  }
}

/* --- the poll --------------------------------------------------------- */

function poll() {
  state.timer = null;
  if (state.paused || document.visibilityState === 'hidden' || state.busy) {
    return;
  }
  state.busy = true;
  document.body.setAttribute('data-busy', '1');

  var gets = [api(''), api('upstreams'), api('health'), api('metrics')];

  Promise.all(gets).then(function (r) {
    var i, bad = r.filter(function (x) { return x.status !== 200; });
    if (bad.length) {
      throw new Error('the API answered ' + bad[0].status
                      + (bad[0].data && bad[0].data.error
                         ? ': ' + bad[0].data.error.text : ''));
    }
    state.write = r[0].data.write === true;
    state.upstreams = r[1].data;
    state.health = r[2].data;
    state.healthEtag = r[2].etag;
    var metrics = parseMetrics(r[3].data);
    sample(metrics, Date.now());

    /* the rollouts of the upstreams that have or had one */
    var names = Object.keys(state.upstreams), ro = [];
    for (i = 0; i < names.length; i++) {
      var m = metrics[names[i] + '/'];
      if (m && m.rollout && m.rollout !== 'none') {
        ro.push(names[i]);
      } else {
        delete state.rollouts[names[i]];
      }
    }
    return Promise.all(ro.map(function (name) {
      return api('upstreams/' + enc(name) + '/rollout').then(function (x) {
        if (x.status === 200) {
          /* its ETag: the upstream's generation when it was read */
          x.data.etag = x.etag;
          state.rollouts[name] = x.data;
        }
        else { delete state.rollouts[name]; }
      });
    }));
  }).then(function () {
    state.polls += 1;
    render();
    setText(document.getElementById('status'),
            'Live · updated ' + new Date().toLocaleTimeString());
    document.body.setAttribute('data-polls', state.polls);
  }).catch(function (e) {
    setText(document.getElementById('status'),
            'Cannot read the API (' + e.message + '); retrying');
  }).then(function () {
    state.busy = false;
    document.body.setAttribute('data-busy', '0');
    schedule(PERIOD);
  });
}

function schedule(ms) {
  if (state.timer !== null) { clearTimeout(state.timer); }
  state.timer = null;
  if (state.paused || document.visibilityState === 'hidden') { return; }
  state.timer = setTimeout(poll, ms);
}

document.addEventListener('visibilitychange', function () {
  if (document.visibilityState === 'visible') { schedule(0); }
  else if (state.timer !== null) {
    clearTimeout(state.timer);
    state.timer = null;
  }
});

/* --- rendering: each part is made once and updated in place, so that
 *     keyboard focus stays where it is ----------------------------------- */

function render() {
  var names = Object.keys(state.upstreams), i;
  var box = document.getElementById('upstreams');
  document.getElementById('no-upstreams').hidden = names.length > 0;
  for (i = 0; i < names.length; i++) {
    renderUpstream(box, state.upstreams[names[i]]);
  }
  for (i in state.cards) {
    if (!state.upstreams[i]) {
      state.cards[i].root.remove();
      delete state.cards[i];
    }
  }

  var hnames = Object.keys(state.health);
  box = document.getElementById('servers');
  document.getElementById('no-servers').hidden = hnames.length > 0;
  for (i = 0; i < hnames.length; i++) {
    renderServers(box, state.health[hnames[i]]);
  }
  for (i in state.serverCards) {
    if (!state.health[i]) {
      state.serverCards[i].root.remove();
      delete state.serverCards[i];
    }
  }

  setText(document.getElementById('mode'), state.write
          ? 'Changes allowed on this location (write=on).'
          : 'Read-only location: no changes from here.');
}

function poolSignature(u) { return Object.keys(u.pools).join('\n'); }

function renderUpstream(box, u) {
  var c = state.cards[u.name];
  if (c && (c.sig !== poolSignature(u) || c.write !== state.write)) {
    c.root.remove();
    c = null;
  }
  if (!c) {
    c = state.cards[u.name] = makeUpstream(u);
    box.appendChild(c.root);
  }

  var pools = Object.keys(u.pools), i, p, parts = [];
  for (i = 0; i < pools.length; i++) {
    p = u.pools[pools[i]];
    c.seg[pools[i]].style.width = p.weight + '%';
    c.seg[pools[i]].title = pools[i] + ' ' + fmtPct(p.weight);
    parts.push(pools[i] + ' ' + fmtPct(p.weight));
    setText(c.weight[pools[i]], fmtPct(p.weight));
    setText(c.configured[pools[i]], fmtPct(p.configured));
    setText(c.healthy[pools[i]], p.healthy + ' of ' + p.servers);
    renderCharts(c, u.name, pools[i]);
  }
  c.bar.setAttribute('aria-label', 'Weights: ' + parts.join(', '));
  setText(c.gen, u.generation);
  setText(c.updated, fmtAgo(u.updated));
  c.updated.setAttribute('datetime', u.updated || '');
  c.updated.title = u.updated || '';
  setText(c.source, SOURCES[u.source] || u.source || '');
  renderRollout(c, u);
}

function makeUpstream(u) {
  var c = { sig: poolSignature(u), write: state.write, seg: {}, weight: {},
            configured: {}, healthy: {}, charts: {} };
  var hid = nextId('up');
  var pools = Object.keys(u.pools), i, name;

  c.gen = el('span', { 'data-generation': u.name });
  c.updated = el('time');
  c.source = el('span');
  c.bar = el('div', { cls: 'bar', role: 'img' });

  var tbody = el('tbody');
  for (i = 0; i < pools.length; i++) {
    name = pools[i];
    c.seg[name] = el('span', { cls: 'c' + (i % 6) });
    c.bar.appendChild(c.seg[name]);
    c.weight[name] = el('td', { cls: 'num', 'data-upstream': u.name,
                                'data-pool': name, 'data-weight': '' });
    c.configured[name] = el('td', { cls: 'num hide-narrow' });
    c.healthy[name] = el('td', { cls: 'num' });
    tbody.appendChild(el('tr', null,
      el('th', { scope: 'row' },
         el('span', { cls: 'swatch c' + (i % 6), 'aria-hidden': 'true' }),
         name),
      el('td', { cls: 'hide-narrow', text: u.pools[name].upstream }),
      c.weight[name], c.configured[name], c.healthy[name]));
  }

  var table = el('div', { cls: 'table-wrap' }, el('table', null,
    el('caption', { text: 'Pools of ' + u.name }),
    el('thead', null, el('tr', null,
      el('th', { scope: 'col', text: 'pool' }),
      el('th', { scope: 'col', cls: 'hide-narrow', text: 'upstream' }),
      el('th', { scope: 'col', cls: 'num', text: 'weight' }),
      el('th', { scope: 'col', cls: 'num hide-narrow', text: 'configured' }),
      el('th', { scope: 'col', cls: 'num', text: 'healthy' }))),
    tbody));

  c.chartBox = el('div', { cls: 'charts' });
  c.rollout = el('div', { cls: 'rollout' });

  c.root = el('article', { cls: 'card', 'aria-labelledby': hid,
                           'data-upstream-card': u.name },
    el('div', { cls: 'card-head' },
      el('h3', { id: hid, text: u.name }),
      el('span', { cls: 'meta' }, 'generation ', c.gen, ' · last change ',
         c.updated, ' ', c.source)),
    c.bar, table,
    el('h4', { text: 'Traffic per pool (up to the last minute)' }),
    c.chartBox, c.rollout,
    state.write ? makeControls(u) : null);
  return c;
}

/* --- charts ----------------------------------------------------------- */

var CHARTS = [
  { key: 'rate', label: 'requests/s', fmt: function (v) {
      return fmtNum(v, v !== null && v < 10 ? 1 : 0); } },
  { key: 'errors', label: 'error ratio', fmt: function (v) {
      return v === null ? '–' : fmtNum(v * 100, 2) + '%'; } },
  { key: 'p99', label: 'p99 latency', fmt: function (v) {
      return v === null ? '–' : fmtNum(v, v < 10 ? 1 : 0) + ' ms'; } }
];

function renderCharts(c, upstream, pool) {
  var key = upstream + '/' + pool, s = state.series[key], ch = c.charts[pool];
  var i, j, d, vals, max, pts, v, last;
  if (!ch) {
    ch = c.charts[pool] = [];
    for (i = 0; i < CHARTS.length; i++) {
      d = {
        value: el('span', { cls: 'value' }),
        line: svg('polyline', { points: '' }),
        svg: svg('svg', { viewBox: '0 0 120 30', preserveAspectRatio: 'none',
                          role: 'img', focusable: 'false' })
      };
      d.svg.appendChild(d.line);
      c.chartBox.appendChild(el('div', { cls: 'chart',
                                         'data-chart': key + '/' +
                                                       CHARTS[i].key },
        el('div', null, el('span', { cls: 'label',
                                     text: pool + ' ' + CHARTS[i].label
                                           + ': ' }), d.value),
        d.svg));
      ch.push(d);
    }
  }
  for (i = 0; i < CHARTS.length; i++) {
    vals = s ? s[CHARTS[i].key] : [];
    max = 0;
    last = null;
    for (j = 0; j < vals.length; j++) {
      if (vals[j] !== null && vals[j] > max) { max = vals[j]; }
      if (vals[j] !== null) { last = vals[j]; }
    }
    if (CHARTS[i].key === 'errors' && max < 0.01) { max = 0.01; }
    if (max <= 0) { max = 1; }
    pts = [];
    for (j = 0; j < vals.length; j++) {
      v = vals[j] === null ? 0 : vals[j];
      pts.push((vals.length < 2 ? 120
                : j * 120 / (vals.length - 1)).toFixed(1) + ','
               + (29 - 28 * v / max).toFixed(1));
    }
    ch[i].line.setAttribute('points', pts.join(' '));
    setText(ch[i].value, CHARTS[i].fmt(last));
    ch[i].svg.setAttribute('aria-label', pool + ' ' + CHARTS[i].label
                           + ' over the last minute, now '
                           + CHARTS[i].fmt(last));
  }
}

/* --- rollouts --------------------------------------------------------- */

function renderRollout(c, u) {
  var ro = state.rollouts[u.name], box = c.rollout;
  var sig = ro ? [ro.id, ro.state, ro.step, ro.history.length,
                  state.write].join('/') : '';
  if (!ro) {
    if (box.firstChild) { box.textContent = ''; }
    c.roSig = '';
    return;
  }
  if (c.roSig !== sig) {
    c.roSig = sig;
    box.textContent = '';
    c.countdown = el('dd', { 'data-countdown': u.name });
    c.started = el('dd');
    var dl = el('dl', null,
      el('dt', { text: 'state' }),
      el('dd', { 'data-rollout-state': u.name, text: ro.state }),
      el('dt', { text: 'pool' }), el('dd', { text: ro.pool }),
      el('dt', { text: 'step' }),
      el('dd', { text: ro.step + ' of ' + ro.steps.length + ' ('
                       + ro.steps.map(fmtPct).join(' → ') + '), weight '
                       + fmtPct(ro.weight) }),
      el('dt', { text: 'step ends' }), c.countdown,
      el('dt', { text: 'started' }), c.started,
      ro.reason ? el('dt', { text: 'reason' }) : null,
      ro.reason ? el('dd', { text: ro.reason }) : null);
    box.appendChild(el('h4', { text: 'Rollout ' + ro.id }));
    box.appendChild(dl);
    box.appendChild(makeHistory(u.name, ro));
    if (state.write) { box.appendChild(makeRolloutControls(u, ro)); }
  }
  var text;
  if (ro.state !== 'progressing') {
    text = ro.ended ? 'ended ' + fmtAgo(ro.ended) : '–';
  } else if (ro.step_ends) {
    var left = Math.round((Date.parse(ro.step_ends) - Date.now()
                           - state.skew) / 1000);
    text = left > 0 ? 'in ' + left + ' s'
           : ro.holding ? 'holding: waiting for ' + ro.min_requests
                          + ' responses (has ' + ro.window.pool.responses
                          + ')'
           : 'now';
  } else {
    text = '–';
  }
  setText(c.countdown, text);
  setText(c.started, (ro.started || '') + ' (' + fmtAgo(ro.started) + ')');
}

function makeHistory(name, ro) {
  if (!ro.history.length) {
    return el('p', { cls: 'muted', text: 'No step decided yet.' });
  }
  var tbody = el('tbody'), i, h, pool;
  for (i = 0; i < ro.history.length; i++) {
    h = ro.history[i];
    pool = h.pool || {};
    tbody.appendChild(el('tr', null,
      el('td', { cls: 'num', text: h.step }),
      el('td', { cls: 'num', text: h.weight === undefined ? ''
                                   : fmtPct(h.weight) }),
      el('td', { cls: 'verdict-' + h.verdict, text: h.verdict }),
      el('td', { cls: 'num', text: pool.responses === undefined ? ''
                                   : pool.responses }),
      el('td', { cls: 'num', text: pool.error_ratio === undefined ? ''
                                   : fmtNum(pool.error_ratio * 100, 2)
                                     + '%' }),
      el('td', { cls: 'num', text: pool.p99 === undefined ? ''
                                   : fmtNum(pool.p99, 1) + ' ms' }),
      el('td', { cls: 'hide-narrow', text: h.time || h.ended || '' })));
  }
  return el('div', { cls: 'table-wrap' }, el('table', null,
    el('caption', { text: 'Verdicts of the rollout of ' + name }),
    el('thead', null, el('tr', null,
      el('th', { scope: 'col', cls: 'num', text: 'step' }),
      el('th', { scope: 'col', cls: 'num', text: 'weight' }),
      el('th', { scope: 'col', text: 'verdict' }),
      el('th', { scope: 'col', cls: 'num', text: 'responses' }),
      el('th', { scope: 'col', cls: 'num', text: 'errors' }),
      el('th', { scope: 'col', cls: 'num', text: 'p99' }),
      el('th', { scope: 'col', cls: 'hide-narrow', text: 'time' }))),
    tbody));
}

/* --- servers ---------------------------------------------------------- */

/* why a server takes no traffic: the API's down_reason when it has one */
function downReason(s) {
  if (s.down_reason !== undefined) { return s.down_reason; }
  if (s.admin_down) { return 'admin'; }
  if (s.config_down) { return 'config'; }
  if (s.state === 'down') { return 'probe'; }
  return null;
}

var REASONS = {
  admin: 'drained through the API',
  config: 'down in the configuration',
  probe: 'failed health checks',
  outlier: 'ejected as an outlier'
};

function renderServers(box, h) {
  var c = state.serverCards[h.name], i, s, row, reason, text, sig;
  sig = h.servers.map(function (x) { return x.address; }).join('\n')
        + '/' + state.write;
  if (c && c.sig !== sig) { c.root.remove(); c = null; }
  if (!c) {
    c = state.serverCards[h.name] = makeServers(h, sig);
    box.appendChild(c.root);
  }
  setText(c.live, h.live + ' live of ' + h.servers.length
          + (h.health_check ? ', health checks on' : ''));
  for (i = 0; i < h.servers.length; i++) {
    s = h.servers[i];
    row = c.rows[i];
    reason = downReason(s);
    setText(row.state, s.state);
    row.state.className = 'state-' + s.state;
    text = reason ? (REASONS[reason] || reason) : '';
    if (reason === 'probe' && s.last_error) { text += ': ' + s.last_error; }
    setText(row.reason, text);
    row.reason.setAttribute('data-reason', reason || '');
    setText(row.probe, s.last_probe ? fmtAgo(s.last_probe) : '–');
    if (row.button) {
      setText(row.button, s.admin_down ? 'Bring back' : 'Drain');
      row.button.setAttribute('aria-label', (s.admin_down ? 'Bring back '
                              : 'Drain ') + s.address + ' of ' + h.name);
      row.button.setAttribute('data-down', s.admin_down ? 'false' : 'true');
    }
  }
}

function makeServers(h, sig) {
  var c = { sig: sig, rows: [] }, tbody = el('tbody'), i, s, row, hid;
  hid = nextId('srv');
  for (i = 0; i < h.servers.length; i++) {
    s = h.servers[i];
    row = {
      state: el('span', { 'data-state': h.name + '/' + s.address }),
      reason: el('td'),
      probe: el('td', { cls: 'hide-narrow' })
    };
    if (state.write) {
      row.button = el('button', { type: 'button',
                                  'data-drain': h.name + '/' + s.address,
                                  on: drainClick(h.name, s.id) });
    }
    tbody.appendChild(el('tr', null,
      el('th', { scope: 'row' }, el('code', { text: s.address }),
         s.backup ? ' (backup)' : null),
      el('td', null, row.state), row.reason, row.probe,
      state.write ? el('td', null, row.button) : null));
    c.rows.push(row);
  }
  c.live = el('span', { cls: 'meta' });
  c.root = el('article', { cls: 'card', 'aria-labelledby': hid },
    el('div', { cls: 'card-head' }, el('h3', { id: hid, text: h.name }),
       c.live),
    el('div', { cls: 'table-wrap' }, el('table', null,
      el('caption', { text: 'Servers of ' + h.name }),
      el('thead', null, el('tr', null,
        el('th', { scope: 'col', text: 'server' }),
        el('th', { scope: 'col', text: 'state' }),
        el('th', { scope: 'col', text: 'down because' }),
        el('th', { scope: 'col', cls: 'hide-narrow', text: 'last probe' }),
        state.write ? el('th', { scope: 'col', text: 'action' }) : null)),
      tbody)));
  return c;
}

/* --- changes ---------------------------------------------------------- */

function say(text, error) {
  var m = document.getElementById('message');
  m.hidden = false;
  m.className = 'message' + (error ? ' error' : '');
  m.textContent = text;
}

/* every change: JSON, If-Match with what this page last read, and the
 * header that tells the API it comes from this page, not another site */
function send(method, path, body, etag, what) {
  var headers = { 'X-Traffic-Shift': '1' };
  if (etag !== null && etag !== undefined) { headers['If-Match'] = etag; }
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; }
  say(what + '…', false);
  return api(path, { method: method, headers: headers,
                     body: body === undefined ? undefined
                           : JSON.stringify(body) })
    .then(function (r) {
      var text = r.data && r.data.error ? r.data.error.text : '';
      if (r.status >= 200 && r.status < 300) {
        say('Done: ' + what + '.', false);
      } else if (r.status === 412) {
        say('Not done: ' + what + '. Someone else changed it since this '
            + 'page last read it; the page now shows the current state: '
            + 'look again, then retry if it is still needed.', true);
      } else if (r.status === 409) {
        say('Not done: ' + what + '. It conflicts with the current state: '
            + text, true);
      } else if (r.status === 403) {
        say('Not allowed: ' + what + '. ' + text, true);
      } else {
        say('Not done: ' + what + ' (HTTP ' + r.status + ')'
            + (text ? ': ' + text : '.'), true);
      }
      schedule(0);
    }, function (e) {
      say('Not done: ' + what + '. The API could not be reached ('
          + e.message + ').', true);
    });
}

function genTag(u) { return '"' + u.generation + '"'; }

function current(name) { return state.upstreams[name]; }

function makeControls(u) {
  var pools = Object.keys(u.pools), i, name = u.name;
  var flip = el('fieldset', null, el('legend', { text: 'Send all traffic to' }));
  for (i = 0; i < pools.length; i++) {
    flip.appendChild(el('button', {
      type: 'button', 'data-flip': name + '/' + pools[i],
      'aria-label': 'Send all traffic of ' + name + ' to ' + pools[i],
      text: pools[i],
      on: (function (pool) {
        return function () {
          var cu = current(name);
          send('PATCH', 'upstreams/' + enc(name), { active: pool },
               genTag(cu), 'all traffic of ' + name + ' to ' + pool);
        };
      })(pools[i])
    }));
  }

  var sid = nextId('canary-pool'), pid = nextId('canary-pct');
  var select = el('select', { id: sid, 'data-canary-pool': name });
  for (i = 0; i < pools.length; i++) {
    select.appendChild(el('option', { value: pools[i], text: pools[i] }));
  }
  select.selectedIndex = pools.length - 1;
  var pct = el('input', { id: pid, type: 'number', min: '0', max: '100',
                          step: '0.01', value: '10',
                          'data-canary-percent': name });
  var canary = el('fieldset', null,
    el('legend', { text: 'Canary' }),
    el('label', { for: sid }, 'pool', select),
    el('label', { for: pid }, 'percent', pct),
    el('button', { type: 'button', 'data-canary-set': name,
                   text: 'Set',
                   on: function () { canaryClick(name, select.value,
                                                 pct.value); } }));
  return el('div', { cls: 'controls', role: 'group',
                     'aria-label': 'Changes to ' + name }, flip, canary);
}

/* the canary gets P%, the pool with the most of the rest gets the rest */
function canaryClick(name, pool, value) {
  var u = current(name), p = Number(value), w = {}, k, main = null;
  if (!(p >= 0 && p <= 100) || Math.round(p * 100) !== p * 100) {
    say('Not done: the percentage must be a number from 0 to 100 with at '
        + 'most two decimals.', true);
    return;
  }
  for (k in u.weights) {
    if (k !== pool && (main === null || u.weights[k] > u.weights[main])) {
      main = k;
    }
  }
  if (main === null) {
    say('Not done: a canary needs a second pool.', true);
    return;
  }
  w[pool] = p;
  w[main] = Math.round((100 - p) * 100) / 100;
  send('PATCH', 'upstreams/' + enc(name), { weights: w }, genTag(u),
       name + ': ' + pool + ' ' + fmtPct(p) + ', ' + main + ' '
       + fmtPct(w[main]));
}

function drainClick(upstream, id) {
  return function (ev) {
    var down = ev.currentTarget.getAttribute('data-down') === 'true';
    var s = state.health[upstream].servers[id];
    send('PATCH', 'health/' + enc(upstream) + '/servers/' + id,
         { down: down }, state.healthEtag,
         (down ? 'drain ' : 'bring back ') + s.address + ' of ' + upstream);
  };
}

function makeRolloutControls(u, ro) {
  var name = u.name, box = el('div', { cls: 'controls', role: 'group',
                                       'aria-label': 'Rollout of ' + name });
  function act(action, label) {
    box.appendChild(el('button', {
      type: 'button', 'data-rollout-action': name + '/' + action,
      'aria-label': label + ' the rollout of ' + name, text: label,
      on: function () {
        if (!state.rollouts[name]) { return; }
        send('PATCH', 'upstreams/' + enc(name) + '/rollout',
             { action: action }, state.rollouts[name].etag,
             action + ' the rollout of ' + name);
      }
    }));
  }
  if (ro.state === 'progressing') { act('pause', 'Pause'); }
  if (ro.state === 'paused') { act('resume', 'Resume'); }
  if (ro.state === 'progressing' || ro.state === 'paused') {
    act('abort', 'Abort');
  }
  return box;
}

/* --- start ------------------------------------------------------------ */

var pauseButton = document.getElementById('pause');
pauseButton.addEventListener('click', function () {
  state.paused = !state.paused;
  pauseButton.setAttribute('aria-pressed', String(state.paused));
  setText(pauseButton, state.paused ? 'Resume updates' : 'Pause updates');
  if (state.paused) {
    setText(document.getElementById('status'), 'Updates paused');
  }
  schedule(0);
});

window.setInterval(function () {
  /* countdowns and "ago" between polls */
  var names = Object.keys(state.cards), i;
  for (i = 0; i < names.length; i++) {
    if (state.upstreams[names[i]]) {
      renderRollout(state.cards[names[i]], state.upstreams[names[i]]);
    }
  }
}, 1000);

schedule(0);

})();
