// The live page of one run: follows /api/events, draws each state, and presses Stop.
"use strict";

(function () {
  const root = document.getElementById("run");
  const link = document.getElementById("connection");
  const ended = (state) => !["starting", "running", "stopping"].includes(state.status);
  let last = null;

  function show(state) {
    last = state;
    document.title = "jstyle: " + state.status + ", " + state.iteration + " / " + state.total;
    JStyle.renderRun(root, state, (version) => "/api/image.png?v=" + version);
  }

  JStyle.follow("/api/events", show, (text) => {
    link.textContent = text === "finished" ? "the run has ended; this page keeps its last state"
      : text;
    link.dataset.link = text;
  }, ended);

  root.querySelector(".stop").addEventListener("click", async () => {
    root.querySelector(".stop").disabled = true;
    const answer = await JStyle.post("/api/stop");
    if (answer.error) root.querySelector(".message").textContent = answer.error;
  });

  window.addEventListener("resize", () => {
    if (last) JStyle.drawCurve(root.querySelector(".curve"), last.terms || []);
  });
})();
