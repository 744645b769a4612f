// Drawing a run's state (jstyle/web/server.py's snapshot) into a <section class="run">:
// the image, the progress, the loss curve on a <canvas>, the log and the config. Shared by
// the live page of a run (run.js) and the studio (studio.js). No libraries.
"use strict";

window.JStyle = (function () {
  const ACTIVE = ["starting", "running"];
  const COLORS = { total: "#222222", content: "#2b6cb0", style: "#dd6b20" };

  function number(value) {
    if (value === null || value === undefined) return "-";
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude >= 1e4 || magnitude < 1e-2)
      ? value.toExponential(2) : String(Math.round(value * 100) / 100);
  }

  function seconds(value) {
    if (value < 60) return Math.round(value) + " s";
    return Math.floor(value / 60) + " min " + Math.round(value % 60) + " s";
  }

  // The loss curve: total, alpha content and beta style after each chunk, log scale.
  function drawCurve(canvas, terms) {
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || canvas.width;
    const cssHeight = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(cssWidth * ratio)) {
      canvas.width = Math.round(cssWidth * ratio);
      canvas.height = Math.round(cssHeight * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, cssWidth, cssHeight);
    g.font = "11px sans-serif";
    const left = 58, right = 12, top = 12, bottom = 28;
    const w = cssWidth - left - right, h = cssHeight - top - bottom;
    g.strokeStyle = "#999";
    g.strokeRect(left, top, w, h);
    const series = { total: 1, content: 2, style: 3 };
    const values = [];
    for (const row of terms) {
      for (const k in series) if (row[series[k]] > 0) values.push(row[series[k]]);
    }
    if (!terms.length || !values.length) {
      g.fillStyle = "#777";
      g.fillText("the loss curve appears after the first chunk of iterations",
        left + 10, top + h / 2);
      return;
    }
    let low = Math.floor(Math.log10(Math.min(...values)));
    let high = Math.ceil(Math.log10(Math.max(...values)));
    if (high === low) high = low + 1;
    const last = terms[terms.length - 1][0];
    const first = Math.min(0, terms[0][0]);
    const x = (it) => left + (last === first ? w : (it - first) / (last - first) * w);
    const y = (v) => top + h - (Math.log10(v) - low) / (high - low) * h;
    g.fillStyle = "#444";
    g.textAlign = "right";
    g.textBaseline = "middle";
    const step = Math.max(1, Math.ceil((high - low) / 6));
    for (let p = low; p <= high; p += step) {
      g.strokeStyle = "#e4e4e4";
      g.beginPath(); g.moveTo(left, y(10 ** p)); g.lineTo(left + w, y(10 ** p)); g.stroke();
      g.fillText("1e" + p, left - 6, y(10 ** p));
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let i = 0; i <= 4; i++) {
      const it = Math.round(first + (last - first) * i / 4);
      g.fillText(String(it), x(it), top + h + 6);
    }
    for (const k in series) {
      g.strokeStyle = COLORS[k];
      g.fillStyle = COLORS[k];
      g.lineWidth = k === "total" ? 2 : 1.5;
      g.beginPath();
      let drawing = false;
      for (const row of terms) {
        const v = row[series[k]];
        if (!(v > 0)) { drawing = false; continue; }
        if (drawing) g.lineTo(x(row[0]), y(v)); else g.moveTo(x(row[0]), y(v));
        drawing = true;
      }
      g.stroke();
      const end = terms[terms.length - 1];
      if (end[series[k]] > 0) {
        g.beginPath(); g.arc(x(end[0]), y(end[series[k]]), 2.5, 0, 2 * Math.PI); g.fill();
      }
    }
    g.lineWidth = 1;
  }

  // Draw ``state`` into ``root``; ``imageUrl(version)`` is where that image is served.
  function renderRun(root, state, imageUrl) {
    const status = root.querySelector(".status");
    status.textContent = state.status;
    status.dataset.status = state.status;
    root.querySelector(".message").textContent = state.message || "";
    const total = state.total || 0;
    const done = state.iteration || 0;
    const bar = root.querySelector(".progress");
    bar.max = Math.max(total, 1);
    bar.value = Math.min(done, total);
    const terms = state.terms || [];
    const lastTerms = terms.length ? terms[terms.length - 1] : null;
    let count = "iteration " + done + " / " + total +
      (total ? " (" + Math.floor(100 * done / total) + "%)" : "");
    if (lastTerms) count += ", loss " + number(lastTerms[1]);
    if (state.elapsed !== undefined && state.elapsed !== null) {
      count += ", " + seconds(state.elapsed);
    }
    root.querySelector(".count").textContent = count;
    const img = root.querySelector(".image");
    const version = state.image || 0;
    if (version > 0 && String(version) !== img.dataset.version) {
      img.dataset.version = String(version);
      img.dataset.pending = String(done);
      img.onload = () => {
        img.dataset.shown = img.dataset.version;
        img.dataset.iteration = img.dataset.pending;
      };
      img.src = imageUrl(version);
    }
    if (version === 0 && img.dataset.version !== "0") {  // another run: nothing yet
      img.removeAttribute("src");
      img.dataset.version = img.dataset.shown = "0";
    }
    drawCurve(root.querySelector(".curve"), terms);
    const log = root.querySelector(".log");
    const logText = (state.log || []).join("\n");
    if (log.textContent !== logText) log.textContent = logText;
    const config = root.querySelector(".config");
    const configText = JSON.stringify(state.config || {}, null, 2);
    if (config.textContent !== configText) config.textContent = configText;
    root.querySelector(".stop").disabled = !ACTIVE.includes(state.status);
  }

  // Follow the event stream at ``url``: ``onState(snapshot)`` for each; ``onLink(text)``
  // says whether the page is connected. Stops once ``done(snapshot)`` is true.
  function follow(url, onState, onLink, done) {
    const source = new EventSource(url);
    source.onopen = () => onLink("live");
    source.onmessage = (event) => {
      const state = JSON.parse(event.data);
      onState(state);
      if (done && done(state)) {
        source.close();
        onLink("finished");
      }
    };
    source.onerror = () => onLink(source.readyState === EventSource.CLOSED
      ? "disconnected" : "reconnecting");
    return source;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let answer = {};
    try { answer = await response.json(); } catch (e) { answer = {}; }
    if (!response.ok && !answer.error) answer.error = "the server answered " + response.status;
    return answer;
  }

  return { ACTIVE, drawCurve, renderRun, follow, post, number };
})();
