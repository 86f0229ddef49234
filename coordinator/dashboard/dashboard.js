// The glam dashboard: polls the coordinator's /api/status and the selected job's
// /api/metrics, and draws workers, jobs, curves, the expert heatmap and events. It fetches
// nothing but this server's own paths (docs/dashboard.md).
'use strict';
(function () {
  const poll_ms = 1000;
  const max_points = 2000;       // kept per job; beyond it every other step is dropped
  const heatmap_columns = 400;   // the newest steps the heatmap shows
  const max_reads_per_poll = 32; // metrics chunks (1 MiB each) read per poll

  const jobs = new Map();        // id -> {next, stride, steps: Map(step -> point), events: [], seen: Set}
  let selected = null;           // the job shown below the tables
  let chosen_by_user = false;
  let charts = null;             // Chart.js instances, once Chart.js has loaded

  const $ = (id) => document.getElementById(id);

  function cell(row, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let u = 0;
    while (n >= 1024 && u < units.length - 1) { n /= 1024; ++u; }
    return (u === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[u];
  }

  function number(n, digits) {
    return Number.isFinite(n) ? n.toFixed(digits) : '';
  }

  function count(n) {
    return Number.isFinite(n) ? Math.round(n).toLocaleString('en') : '';
  }

  async function get_json(path) {
    const r = await fetch(path, {credentials: 'same-origin', cache: 'no-store'});
    if (!r.ok) throw new Error(path.split('?')[0] + ': HTTP ' + r.status + ' ' + (await r.text()).trim());
    return r.json();
  }

  // --- status: workers, jobs, placement ---------------------------------------------------

  function render_workers(status) {
    const body = $('workers').tBodies[0];
    body.replaceChildren();
    for (const w of status.workers || []) {
      const row = body.insertRow();
      row.dataset.worker = w.name;
      cell(row, w.name);
      const heard = w.last_heard_ms;
      const health = heard <= 2000 ? 'ok' : 'late';
      cell(row, health, 'text ' + health);
      cell(row, number(heard / 1000, 1) + ' s ago');
      cell(row, (w.units || []).join(' ') || '—', 'text');
      cell(row, number(w.busy_seconds_per_step, 3));
      cell(row, count(w.tokens_computed));
      cell(row, bytes(w.bytes_received));
      cell(row, bytes(w.bytes_sent));
      cell(row, bytes(w.memory_bytes));
    }
    if (!(status.workers || []).length) {
      const row = body.insertRow();
      const td = cell(row, 'no workers registered', 'text muted');
      td.colSpan = 9;
    }
  }

  function render_placement(status) {
    const body = $('placement').tBodies[0];
    body.replaceChildren();
    // The running job's measured share of the routed tokens per expert, when known.
    const share = new Map();
    for (const j of status.jobs || [])
      for (const e of j.experts || []) if (Number.isFinite(e.load_share)) share.set(String(e.expert), e.load_share);
    for (const w of status.workers || []) {
      const units = w.units || [];
      const shards = units.filter((u) => u.startsWith('shard'));
      const experts = units.filter((u) => u.startsWith('expert')).map((u) => u.slice(6))
        .map((e) => (share.has(e) ? e + ' (' + number(100 * share.get(e), 0) + '%)' : e));
      const row = body.insertRow();
      row.dataset.worker = w.name;
      row.dataset.units = String(units.length);
      cell(row, w.name);
      cell(row, shards.join(' ') || '—', 'text');
      cell(row, experts.length ? experts.join(' ') : '—', 'text');
    }
  }

  function choose_job(status) {
    const list = status.jobs || [];
    if (chosen_by_user && list.some((j) => j.id === selected)) return;
    const active = list.filter((j) => j.state === 'running' || j.state === 'pending');
    const pick = active.length ? active[active.length - 1] : list[list.length - 1];
    selected = pick ? pick.id : null;
  }

  function render_jobs(status) {
    const body = $('jobs').tBodies[0];
    body.replaceChildren();
    for (const j of (status.jobs || []).slice().reverse()) {
      const row = body.insertRow();
      row.dataset.job = j.id;
      if (j.id === selected) row.className = 'selected';
      const p = j.progress || {};
      cell(row, j.id);
      const state = j.state + (j.activity ? ' (' + j.activity + ')' : '');
      cell(row, state, 'text ' + (j.state === 'failed' ? 'bad' : j.state === 'running' ? 'ok' : ''));
      cell(row, j.step + ' / ' + j.steps);
      cell(row, j.epoch === undefined ? '' : String(j.epoch));
      cell(row, number(j.loss, 4));
      cell(row, number(p.val_loss, 4));
      cell(row, count(j.tokens_per_s));
      cell(row, p.mfu === undefined ? '' : number(100 * p.mfu, 1) + ' %');
      cell(row, number(j.balancedness, 2));
      cell(row, (j.error || '') + (j.waiting || ''), 'text');
      row.addEventListener('click', () => {
        selected = j.id;
        chosen_by_user = true;
        refresh();
      });
    }
  }

  // --- a job's metrics lines ----------------------------------------------------------------

  function job_data(id) {
    if (!jobs.has(id)) jobs.set(id, {next: 0, stride: 1, steps: new Map(), events: [], seen: new Set()});
    return jobs.get(id);
  }

  function add_line(d, line) {
    if (typeof line.event === 'string') {
      const key = JSON.stringify(line);
      if (!d.seen.has(key)) {
        d.seen.add(key);
        d.events.push(line);
      }
      return;
    }
    if (typeof line.step !== 'number' || line.step % d.stride !== 0) return;
    // A step replayed after a rollback has the same values: the newer line replaces the older.
    d.steps.set(line.step, {
      loss: line.loss,
      val_loss: line.val_loss,
      tokens_per_second: line.tokens_per_second,
      mfu: line.mfu,
      tokens_per_expert: line.tokens_per_expert,
    });
    while (d.steps.size > max_points) {
      d.stride *= 2;
      for (const step of [...d.steps.keys()]) if (step % d.stride !== 0) d.steps.delete(step);
    }
  }

  async function pull_metrics(id) {
    const d = job_data(id);
    for (let i = 0; i < max_reads_per_poll; ++i) {
      const m = await get_json('/api/metrics?job=' + encodeURIComponent(id) + '&from=' + d.next);
      if (m.reset) {
        // The file was cut (a rollback to a checkpoint): read it again from the start.
        d.steps.clear();
        d.stride = 1;
      }
      for (const line of m.lines) add_line(d, line);
      d.next = m.next;
      if (!m.more) break;
    }
    return d;
  }

  // --- charts -----------------------------------------------------------------------------

  function make_charts() {
    if (charts || typeof Chart === 'undefined') return charts;
    const common = (y_title) => ({
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      spanGaps: true,
      interaction: {mode: 'nearest', intersect: false},
      scales: {x: {type: 'linear', title: {display: true, text: 'step'}}, y: {title: {display: true, text: y_title}}},
    });
    const speed_options = common('tokens/s');
    speed_options.scales.y1 = {position: 'right', title: {display: true, text: 'MFU %'}, grid: {drawOnChartArea: false}};
    charts = {
      loss: new Chart($('loss-chart'), {
        type: 'line',
        data: {datasets: [
          {label: 'loss', data: [], borderColor: '#1a73e8', pointRadius: 0, borderWidth: 1.5},
          {label: 'validation loss', data: [], borderColor: '#d93025', pointRadius: 3, showLine: true},
        ]},
        options: common('loss'),
      }),
      speed: new Chart($('speed-chart'), {
        type: 'line',
        data: {datasets: [
          {label: 'tokens/s', data: [], borderColor: '#137333', pointRadius: 0, borderWidth: 1.5, yAxisID: 'y'},
          {label: 'MFU %', data: [], borderColor: '#9334e6', pointRadius: 0, borderWidth: 1.5, yAxisID: 'y1'},
        ]},
        options: speed_options,
      }),
    };
    return charts;
  }

  function render_curves(d) {
    const steps = [...d.steps.keys()].sort((a, b) => a - b);
    const series = (f) => steps.filter((s) => Number.isFinite(f(d.steps.get(s)))).map((s) => ({x: s, y: f(d.steps.get(s))}));
    const loss = series((p) => p.loss);
    const val = series((p) => p.val_loss);
    const speed = series((p) => p.tokens_per_second);
    const mfu = series((p) => (p.mfu === undefined ? NaN : 100 * p.mfu));
    const c = make_charts();
    if (c) {
      c.loss.data.datasets[0].data = loss;
      c.loss.data.datasets[1].data = val;
      c.speed.data.datasets[0].data = speed;
      c.speed.data.datasets[1].data = mfu;
      c.loss.update('none');
      c.speed.update('none');
      $('charts-problem').textContent = '';
    } else {
      $('charts-problem').textContent =
        'Chart.js did not load: install Debian\'s libjs-chart.js on the coordinator\'s machine.';
    }
    // What the charts hold, for people reading the DOM and for tests.
    $('loss-chart').dataset.points = String(c ? loss.length : 0);
    $('loss-chart').dataset.valPoints = String(c ? val.length : 0);
    $('speed-chart').dataset.points = String(c ? speed.length : 0);
    $('speed-chart').dataset.mfuPoints = String(c ? mfu.length : 0);
  }

  // Blue (no tokens) through white (an even share) to red (twice an even share or more).
  function load_colour(share) {
    const t = Math.max(0, Math.min(2, share));
    const mix = (a, b, f) => Math.round(a + (b - a) * f);
    if (t <= 1) return 'rgb(' + mix(59, 255, t) + ',' + mix(111, 255, t) + ',' + mix(216, 255, t) + ')';
    const f = t - 1;
    return 'rgb(' + mix(255, 216, f) + ',' + mix(255, 69, f) + ',' + mix(255, 59, f) + ')';
  }

  function render_heatmap(d) {
    const canvas = $('expert-heatmap');
    const ctx = canvas.getContext('2d');
    const steps = [...d.steps.keys()].sort((a, b) => a - b)
      .filter((s) => Array.isArray(d.steps.get(s).tokens_per_expert)).slice(-heatmap_columns);
    const experts = steps.length ? d.steps.get(steps[steps.length - 1]).tokens_per_expert.length : 0;
    ctx.fillStyle = '#f4f4f4';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (steps.length && experts) {
      const w = canvas.width / steps.length;
      const h = canvas.height / experts;
      steps.forEach((s, i) => {
        const counts = d.steps.get(s).tokens_per_expert;
        const total = counts.reduce((a, b) => a + b, 0);
        const even = total / counts.length;
        counts.forEach((n, e) => {
          ctx.fillStyle = load_colour(even > 0 ? n / even : 0);
          ctx.fillRect(Math.floor(i * w), Math.floor(e * h), Math.ceil(w), Math.ceil(h));
        });
      });
    }
    $('heatmap-axis').textContent = steps.length
      ? 'rows: expert 0 (top) to ' + (experts - 1) + '; columns: steps ' + steps[0] + ' to ' + steps[steps.length - 1]
      : 'no steps yet';
    canvas.dataset.steps = String(steps.length);
    canvas.dataset.experts = String(experts);
    canvas.dataset.firstStep = steps.length ? String(steps[0]) : '';
    canvas.dataset.lastStep = steps.length ? String(steps[steps.length - 1]) : '';
  }

  function render_events(d, job) {
    const timeline = $('timeline');
    timeline.replaceChildren();
    const span = Math.max(1, job ? job.steps : 1);
    for (const [side, text] of [['left', 'step 0'], ['right', 'step ' + span]]) {
      const label = document.createElement('span');
      label.className = 'end';
      label.style[side] = '0.5em';
      label.textContent = text;
      timeline.appendChild(label);
    }
    for (const e of d.events) {
      const m = document.createElement('div');
      m.className = 'marker event-' + e.event;
      m.dataset.event = e.event;
      m.style.left = (100 * Math.min(1, (e.from_step || 0) / span)) + '%';
      m.title = e.event + ' at step ' + e.from_step + (e.reason ? ': ' + e.reason : '');
      timeline.appendChild(m);
    }
    timeline.dataset.events = String(d.events.length);
    const body = $('events').tBodies[0];
    body.replaceChildren();
    for (const e of d.events.slice().reverse()) {
      const row = body.insertRow();
      row.dataset.event = e.event;
      cell(row, e.event, 'event-name');
      cell(row, e.from_step === undefined ? '' : String(e.from_step));
      cell(row, e.epoch === undefined ? '' : String(e.epoch));
      cell(row, e.restored_from || '', 'text');
      cell(row, e.steps_replayed === undefined ? '' : String(e.steps_replayed));
      cell(row, e.units_moved === undefined ? '' : String(e.units_moved));
      cell(row, bytes(e.bytes));
      cell(row, number(e.seconds, 2));
      cell(row, (e.workers || []).join(' '), 'text');
      cell(row, (e.reason || '') + (e.interrupted_by ? ' (interrupted by ' + e.interrupted_by + ')' : ''), 'wrap');
    }
  }

  // Loads the page's Content-Security-Policy refused (anything not from this server).
  const blocked = [];
  document.addEventListener('securitypolicyviolation', (e) => blocked.push('blocked ' + e.blockedURI));

  function record_resources() {
    const names = performance.getEntriesByType('resource').map((e) => e.name);
    $('resources').textContent = [location.href].concat(names, blocked).join('\n');
  }

  // --- the loop ---------------------------------------------------------------------------

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const status = await get_json('/api/status');
      const c = status.coordinator || {};
      $('cluster').textContent = 'coordinator ' + c.listen + ' · epoch ' + c.epoch + ' · ' +
        (status.workers || []).length + ' workers · in ' + bytes(c.bytes_received) + ' · out ' + bytes(c.bytes_sent);
      choose_job(status);
      render_workers(status);
      render_placement(status);
      render_jobs(status);
      const job = (status.jobs || []).find((j) => j.id === selected);
      $('job-id').textContent = selected || 'none yet';
      if (selected) {
        const d = await pull_metrics(selected);
        render_curves(d);
        render_heatmap(d);
        render_events(d, job);
      }
      $('problem').textContent = '';
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      document.body.dataset.rendered = '1';
      document.body.dataset.job = selected || '';
    } catch (e) {
      $('problem').textContent = String(e.message || e);
    } finally {
      record_resources();
      busy = false;
    }
  }

  refresh();
  setInterval(refresh, poll_ms);
})();
