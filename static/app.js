// The portal's page scripts. Every page works without them (figures are text, charts are SVG);
// with them, figures update in place, charts become interactive and the TOU grid paints.
// Loaded as a file (the CSP allows no inline script); each part looks for its own markup.
'use strict';

(function () {
  // ------------------------------------------------------------ live figures
  // <section data-live="/api/live/overview" data-live-seconds="5"> ... <span data-field="k">
  // Polls the URL; the answer's `fields` map element keys to new text. The request is marked
  // as background work, so it never extends the session's idle timeout.
  function startLive(root) {
    var url = root.getAttribute('data-live');
    var seconds = Math.max(2, parseInt(root.getAttribute('data-live-seconds') || '5', 10));
    var status = root.querySelector('[data-live-status]');
    var timer = null;
    var stopped = false;
    function say(text) {
      if (status) status.textContent = text;
    }
    function schedule() {
      if (!stopped) timer = setTimeout(tick, seconds * 1000);
    }
    function apply(fields) {
      Object.keys(fields).forEach(function (key) {
        root.querySelectorAll('[data-field="' + key + '"]').forEach(function (el) {
          var value = fields[key];
          if (value && typeof value === 'object') {
            if ('text' in value) el.textContent = value.text;
            if ('class' in value) el.className = value.class;
            if ('href' in value) el.setAttribute('href', value.href);
            if ('hidden' in value) el.hidden = !!value.hidden;
          } else {
            el.textContent = value;
          }
        });
      });
    }
    function tick() {
      timer = null;
      if (document.hidden) return; // resumed by visibilitychange
      fetch(url, { headers: { 'X-Tau-Background': '1', Accept: 'application/json' }, credentials: 'same-origin' })
        .then(function (res) {
          if (res.status === 401 || res.status === 403) {
            stopped = true;
            say(root.getAttribute('data-live-stopped') ||
              'Live updates stopped: your session has ended. Reload the page to sign in again.');
            root.setAttribute('data-live-state', 'stopped');
            return null;
          }
          if (!res.ok) throw new Error('HTTP ' + res.status);
          return res.json();
        })
        .then(function (body) {
          if (!body) return;
          apply(body.fields || {});
          root.setAttribute('data-live-updated', body.updatedAt || String(Date.now()));
          say('Updated ' + new Date().toLocaleTimeString() + '; updates every ' + seconds + ' s.');
          schedule();
        })
        .catch(function () {
          say('Live updates paused: the portal did not answer. Retrying…');
          schedule();
        });
    }
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && !timer && !stopped) tick();
    });
    schedule();
  }

  // ------------------------------------------------------------ charts
  var COLOURS = ['#0c4a6e', '#b45309', '#6d28d9', '#15803d', '#be123c', '#0891b2'];

  // `body` as the series endpoint answers it, or as a page's inline `data-chart`: style
  // "bars" (day and month energy) or lines; `zoomable` when finer data can be fetched.
  function chartOptions(el, body, width, zoomable) {
    var tz = body.timeZone;
    var decimals = body.decimals == null ? 3 : body.decimals;
    var bars = body.style === 'bars';
    var single = body.lines.length === 3 && body.lines[0].kind === 'min';
    var fmtValue = function (v) { return v == null ? '–' : v.toFixed(decimals) + (body.unit ? ' ' + body.unit : ''); };
    var series = [{ value: function (u, t) { return t == null ? '–' : fmtTime(t, tz, body); } }];
    body.lines.forEach(function (line, i) {
      var avg = line.kind === 'avg';
      var colour = single ? (avg ? COLOURS[0] : '#7dd3fc') : COLOURS[i % COLOURS.length];
      var s = { label: line.label, stroke: colour, width: avg ? 1.5 : 1, spanGaps: false, value: function (u, v) { return fmtValue(v); } };
      if (bars) {
        // Each bar spans its bucket from its start (align 1), so a day's bar sits on that day.
        s.paths = uPlot.paths.bars({ size: [0.8, 64], align: 1 });
        s.fill = colour;
        s.points = { show: false };
      }
      series.push(s);
    });
    var opts = {
      width: width,
      height: Math.max(220, Math.min(360, Math.round(width * 0.4))),
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz); },
      series: series,
      cursor: { drag: { x: zoomable, y: false } },
      axes: [{}, { label: body.unit, size: 60 }],
      hooks: {},
    };
    if (bars) {
      opts.scales = {
        x: { time: true, range: function () { return [body.from, body.to]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
      };
    }
    if (single) opts.bands = [{ series: [3, 1], fill: 'rgba(125, 211, 252, 0.25)' }];
    opts.fmtValue = fmtValue;
    return opts;
  }

  function fmtTime(t, tz, body) {
    var parts = { timeZone: tz, year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    if (body && body.dateOnly) {
      delete parts.hour;
      delete parts.minute;
      if (body.bucket === 'month') { delete parts.day; parts.month = 'long'; }
    }
    return new Date(t * 1000).toLocaleString(undefined, parts);
  }

  function columns(body) {
    return [body.times].concat(body.lines.map(function (l) { return l.values; }));
  }

  function startChart(el) {
    if (typeof uPlot === 'undefined' || !window.fetch) return;
    var base = el.getAttribute('data-series');
    var inline = el.getAttribute('data-chart');
    var status = document.createElement('p');
    status.className = 'muted status';
    status.setAttribute('role', 'status');
    var tooltip = document.createElement('div');
    tooltip.className = 'tooltip';
    tooltip.hidden = true;
    var plot = null;
    var original = null;
    function load(url) {
      if (!url) return Promise.resolve(JSON.parse(inline));
      el.setAttribute('data-loading', 'true');
      return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (res) {
          if (!res.ok) throw new Error('HTTP ' + res.status);
          return res.json();
        })
        .finally(function () { el.removeAttribute('data-loading'); });
    }
    function describe(body) {
      el.setAttribute('data-points', String(body.times.length));
      el.setAttribute('data-bucket-seconds', String(body.bucketSeconds));
      var points = body.lines.reduce(function (n, l) {
        return n + l.values.filter(function (v) { return v != null; }).length;
      }, 0);
      el.setAttribute('data-values', String(points));
      status.textContent = body.times.length + ' buckets' + (body.bucket ? ' of ' + body.bucket : '') + ' from ' +
        fmtTime(body.from, body.timeZone, body) + ' to ' + fmtTime(body.to, body.timeZone, body) +
        (points ? '' : ': no data');
    }
    function draw(body) {
      original = original || body;
      // SVG elements have no `hidden` property: hide the fallbacks by style.
      el.querySelectorAll('.fallback').forEach(function (f) { f.style.display = 'none'; });
      var width = Math.max(280, el.clientWidth);
      var opts = chartOptions(el, body, width, !!base);
      opts.hooks.setSelect = [function (u) {
        if (!base || u.select.width < 4) return;
        var min = u.posToVal(u.select.left, 'x');
        var max = u.posToVal(u.select.left + u.select.width, 'x');
        u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
        var url = base.replace(/([?&])(range|from|to)=[^&]*/g, '$1') + '&start=' + Math.floor(min * 1000) + '&end=' + Math.ceil(max * 1000);
        load(url).then(function (finer) {
          u.setData(columns(finer), true);
          describe(finer);
          status.textContent += '. Double-click the chart to zoom out.';
        }).catch(function () { status.textContent = 'Could not load the zoomed range; try again.'; });
      }];
      opts.hooks.setCursor = [function (u) {
        var i = u.cursor.idx;
        el.setAttribute('data-cursor', i == null ? '' : String(i));
        if (i == null || u.cursor.left < 0) { tooltip.hidden = true; return; }
        var lines = [fmtTime(u.data[0][i], body.timeZone, body)];
        for (var s = 1; s < u.series.length; s++) {
          lines.push(u.series[s].label + ': ' + opts.fmtValue(u.data[s][i]));
        }
        tooltip.textContent = lines.join('\n');
        tooltip.style.whiteSpace = 'pre';
        tooltip.hidden = false;
        var left = Math.min(u.cursor.left + 12, Math.max(0, u.over.clientWidth - tooltip.offsetWidth));
        tooltip.style.left = left + 'px';
        tooltip.style.top = (u.cursor.top + 12) + 'px';
      }];
      if (plot) plot.destroy();
      plot = new uPlot(opts, columns(body), el);
      plot.over.appendChild(tooltip);
      plot.over.addEventListener('dblclick', function () {
        plot.setData(columns(original), true);
        describe(original);
      });
      describe(body);
      el.appendChild(status);
    }
    load(base).then(draw).catch(function () {
      status.textContent = 'The interactive chart could not load; the chart above shows the same data.';
      el.appendChild(status);
    });
    var resize = null;
    window.addEventListener('resize', function () {
      clearTimeout(resize);
      resize = setTimeout(function () {
        if (plot) plot.setSize({ width: Math.max(280, el.clientWidth), height: plot.height });
      }, 150);
    });
  }

  // ------------------------------------------------------------ TOU grid
  // <table class="tou-grid"> of <select>s (the form without JavaScript) becomes a grid to paint:
  // each cell shows its period's colour and letter; a press paints a cell with the chosen
  // period, a drag or a shift-click the rectangle from the first cell; the keyboard moves with
  // the arrows (Home/End: the row's ends), sets the period with P, S or O, paints with Space
  // and with Shift+arrow as it moves. The selects stay in the form (hidden), so saving is
  // unchanged.
  var LETTERS = { peak: 'P', standard: 'S', off_peak: 'O' };
  var LABELS = { peak: 'Peak', standard: 'Standard', off_peak: 'Off-peak' };
  var KEYS = { p: 'peak', s: 'standard', o: 'off_peak' };

  function startTouGrid(table) {
    var rows = Array.prototype.map.call(table.tBodies[0].rows, function (tr) {
      return Array.prototype.filter.call(tr.cells, function (c) { return c.querySelector('select'); });
    });
    if (!rows.length || !rows[0].length) return;
    var season = table.closest('fieldset');
    var toolbar = season && season.querySelector('.tou-brush');
    var brush = 'peak';
    var anchor = [0, 0];
    var focus = [0, 0];
    var drag = null;
    function sel(cell) { return cell.querySelector('select'); }
    function show(cell) {
      var s = sel(cell);
      cell.className = 'tou-cell tou-' + s.value;
      cell.querySelector('.tou-letter').textContent = LETTERS[s.value] || '?';
      cell.setAttribute('aria-label', s.getAttribute('aria-label') + ': ' + (LABELS[s.value] || 'not set'));
    }
    function set(r, c, period) {
      sel(rows[r][c]).value = period;
      show(rows[r][c]);
    }
    function paint(a, b, period) {
      for (var r = Math.min(a[0], b[0]); r <= Math.max(a[0], b[0]); r++) {
        for (var c = Math.min(a[1], b[1]); c <= Math.max(a[1], b[1]); c++) set(r, c, period);
      }
    }
    function values() {
      return rows.map(function (row) { return row.map(function (cell) { return sel(cell).value; }); });
    }
    function restore(saved) {
      saved.forEach(function (row, r) { row.forEach(function (v, c) { set(r, c, v); }); });
    }
    function setBrush(period) {
      brush = period;
      if (toolbar) toolbar.querySelectorAll('button[data-period]').forEach(function (b) {
        b.setAttribute('aria-pressed', String(b.getAttribute('data-period') === period));
      });
    }
    function moveFocus(r, c) {
      rows[focus[0]][focus[1]].tabIndex = -1;
      focus = [r, c];
      rows[r][c].tabIndex = 0;
      rows[r][c].focus();
    }
    function cellAt(el) {
      var cell = el && el.closest && el.closest('td.tou-cell');
      return cell && table.contains(cell) ? [Number(cell.getAttribute('data-r')), Number(cell.getAttribute('data-c'))] : null;
    }
    table.classList.add('paintable');
    table.setAttribute('role', 'grid');
    rows.forEach(function (row, r) {
      row.forEach(function (cell, c) {
        var letter = document.createElement('span');
        letter.className = 'tou-letter';
        letter.setAttribute('aria-hidden', 'true');
        cell.appendChild(letter);
        sel(cell).hidden = true; // still submitted with the form
        cell.setAttribute('role', 'gridcell');
        cell.setAttribute('data-r', String(r));
        cell.setAttribute('data-c', String(c));
        cell.tabIndex = -1;
        show(cell);
      });
    });
    rows[0][0].tabIndex = 0;
    if (toolbar) {
      toolbar.hidden = false;
      toolbar.addEventListener('click', function (e) {
        var b = e.target.closest('button[data-period]');
        if (b) setBrush(b.getAttribute('data-period'));
      });
    }
    table.addEventListener('pointerdown', function (e) {
      var at = cellAt(e.target);
      if (!at || e.button !== 0) return;
      e.preventDefault();
      var from = e.shiftKey ? anchor : at;
      drag = { from: from, saved: values() };
      paint(from, at, brush);
      anchor = from;
      moveFocus(at[0], at[1]);
    });
    table.addEventListener('pointermove', function (e) {
      if (!drag) return;
      var at = cellAt(document.elementFromPoint(e.clientX, e.clientY));
      if (!at) return;
      restore(drag.saved);
      paint(drag.from, at, brush);
    });
    function endDrag() { drag = null; }
    document.addEventListener('pointerup', endDrag);
    document.addEventListener('pointercancel', endDrag);
    table.addEventListener('keydown', function (e) {
      var r = focus[0];
      var c = focus[1];
      var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      if (KEYS[key] && !e.ctrlKey && !e.metaKey && !e.altKey) {
        setBrush(KEYS[key]);
        set(r, c, brush);
        anchor = [r, c];
      } else if (key === ' ' || key === 'Enter') {
        set(r, c, brush);
        anchor = [r, c];
      } else if (key === 'ArrowLeft' || key === 'ArrowRight' || key === 'ArrowUp' || key === 'ArrowDown' || key === 'Home' || key === 'End') {
        if (key === 'ArrowLeft') c = Math.max(0, c - 1);
        if (key === 'ArrowRight') c = Math.min(rows[r].length - 1, c + 1);
        if (key === 'ArrowUp') r = Math.max(0, r - 1);
        if (key === 'ArrowDown') r = Math.min(rows.length - 1, r + 1);
        if (key === 'Home') c = 0;
        if (key === 'End') c = rows[r].length - 1;
        if (e.shiftKey) {
          paint(focus, [r, c], brush);
          anchor = [r, c];
        }
        moveFocus(r, c);
      } else {
        return;
      }
      e.preventDefault();
    });
  }

  // ------------------------------------------------------------ start
  function start() {
    document.querySelectorAll('[data-live]').forEach(startLive);
    document.querySelectorAll('.chart[data-series], .chart[data-chart]').forEach(startChart);
    document.querySelectorAll('table.tou-grid').forEach(startTouGrid);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
