// The studio's page: the form (uploads, config, the few keys), the runs and their queue,
// and the selected run drawn by live.js, following /api/events.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const root = $("run");
  const keys = Array.from(document.querySelectorAll("[data-key]"));
  let info = null;
  let selected = null;  // the id of the run shown
  let jobs = [];

  function megabytes(bytes) { return (bytes / 2 ** 20).toFixed(1) + " MB"; }

  function fillChoices(select, choices, blank) {
    select.innerHTML = "";
    if (blank) select.add(new Option(blank, ""));
    for (const choice of choices) select.add(new Option(choice, choice));
  }

  // A config's value as a field shows it: very small or large numbers in exponent form,
  // every digit kept (a value left as it is must read back as the config's own).
  function shown(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number" && value !== 0 &&
        (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e6)) return value.toExponential();
    return String(value);
  }

  function fillFields() {
    const config = info.configs.find((c) => c.name === $("config").value) || info.configs[0];
    for (const field of keys) {
      field.value = shown(config.values[field.dataset.key]);
    }
  }

  async function loadInfo() {
    info = await (await fetch("/api/info")).json();
    const select = $("config");
    for (const config of info.configs) {
      select.add(new Option(config.name || "jstyle's defaults", config.name));
    }
    if (info.configs.some((c) => c.name === "quick.yaml")) select.value = "quick.yaml";
    fillChoices($("balance"), info.choices.balance);
    fillChoices($("preserve_color"), info.choices.preserve_color);
    fillChoices($("style_loss"), info.choices.style_loss, "as in the config");
    fillFields();
    $("limit").textContent = "images up to " + megabytes(info.max_upload_bytes);
    $("where").textContent = info.local ? "on " + info.url + ", this machine only"
      : "on " + info.url + ", reachable from other machines";
    select.addEventListener("change", fillFields);
  }

  function showError(text) { $("error").textContent = text || ""; }

  async function upload(input, role) {
    const file = input.files[0];
    if (!file) throw new Error("choose a " + role + " image first");
    if (file.size > info.max_upload_bytes) {
      throw new Error(file.name + " is " + megabytes(file.size) + ", more than the " +
        megabytes(info.max_upload_bytes) + " allowed; shrink it first");
    }
    const response = await fetch("/api/uploads?name=" + encodeURIComponent(file.name),
      { method: "POST", body: file });
    let answer = {};
    try { answer = await response.json(); } catch (e) { answer = {}; }
    if (!response.ok) throw new Error(answer.error || "the upload failed (" + response.status + ")");
    return answer.id;
  }

  $("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const button = $("start");
    button.disabled = true;
    try {
      const content = await upload($("content"), "content");
      const style = await upload($("style"), "style");
      const fields = {};
      for (const field of keys) fields[field.dataset.key] = field.value;
      const answer = await JStyle.post("/api/jobs", {
        config: $("config").value, content, style, fields, extra: $("extra").value,
      });
      if (answer.error) throw new Error(answer.error);
      selected = answer.id;
      render();
    } catch (error) {
      showError(error.message);
    } finally {
      button.disabled = false;
    }
  });

  function renderList() {
    const list = $("jobs");
    list.innerHTML = "";
    $("no-jobs").classList.toggle("hidden", jobs.length > 0);
    for (const job of jobs) {
      const item = document.createElement("li");
      item.dataset.id = String(job.id);
      item.dataset.status = job.status;
      item.classList.toggle("selected", job.id === selected);
      const name = document.createElement("span");
      name.textContent = "#" + job.id + " " + job.name;
      const state = document.createElement("span");
      state.className = "job-status";
      state.textContent = job.position ? "queued (" + job.position + ")"
        : job.status + (job.live.total ? ", " + job.live.iteration + "/" + job.live.total : "");
      item.append(name, state);
      item.addEventListener("click", () => { selected = job.id; render(); });
      list.append(item);
    }
  }

  function render() {
    renderList();
    const job = jobs.find((j) => j.id === selected);
    root.classList.toggle("hidden", !job);
    if (!job) return;
    root.dataset.id = String(job.id);
    root.querySelector(".job-name").textContent = "#" + job.id + " " + job.name;
    const img = root.querySelector(".image");
    if (img.dataset.job !== String(job.id)) {  // another run: start its image afresh
      img.dataset.job = String(job.id);
      img.dataset.version = "-1";
    }
    JStyle.renderRun(root, job.live, (v) => "/api/jobs/" + job.id + "/image.png?v=" + v);
    root.querySelector(".stop").disabled =
      !["queued", "starting", "running"].includes(job.status);
    root.querySelector(".resume").classList.toggle("hidden", !job.resumable);
    root.querySelector(".command").textContent = job.command;
    for (const kind of ["png", "json"]) {
      const link = root.querySelector(".download-" + kind);
      const href = job.files[kind];
      link.classList.toggle("hidden", !href);
      if (href) link.href = href; else link.removeAttribute("href");
    }
  }

  root.querySelector(".stop").addEventListener("click", async () => {
    root.querySelector(".stop").disabled = true;
    const answer = await JStyle.post("/api/jobs/" + selected + "/stop");
    if (answer.error) showError(answer.error);
  });
  root.querySelector(".resume").addEventListener("click", async () => {
    const answer = await JStyle.post("/api/jobs/" + selected + "/resume");
    if (answer.error) showError(answer.error); else { selected = answer.id; render(); }
  });
  window.addEventListener("resize", render);

  loadInfo().then(() => {
    JStyle.follow("/api/events", (state) => {
      jobs = state.jobs;
      if (selected === null && jobs.length) selected = jobs[0].id;
      render();
    }, (text) => {
      $("connection").textContent = text;
      $("connection").dataset.link = text;
    });
  }).catch((error) => showError("cannot reach the studio: " + error.message));
})();
