// Polls the run's JSON every second until it ends, updating the page in
// place. Without JavaScript a <noscript> refresh reloads the page instead.
(function () {
  "use strict";
  var box = document.getElementById("run");
  if (!box || box.dataset.terminal === "1") { return; }
  var url = box.dataset.statusUrl;
  function show(task) {
    var state = document.getElementById("run-state");
    state.textContent = task.outcome;
    state.className = "state-" + task.outcome;
    document.getElementById("run-phase").textContent = task.phase || "";
    document.getElementById("run-progress").textContent = task.progress_text;
    var share = task.progress === null ? 0 : task.progress;
    document.getElementById("run-bar").style.width = Math.round(share * 100) + "%";
    var error = document.getElementById("run-error");
    error.textContent = task.error || "";
    error.hidden = !task.error;
    if (task.terminal) {
      document.getElementById("run-result").textContent = JSON.stringify(task.result, null, 2);
      document.getElementById("run-result-box").hidden = false;
      if (task.outcome === "failed") { box.classList.add("danger"); }
      box.dataset.terminal = "1";
      // Reload once so the page shows the end as the server renders it
      // (messages, the NOT valid note); the reloaded page no longer polls.
      window.location.reload();
    }
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (task) {
        if (task) { show(task); }
        if (!task || !task.terminal) { window.setTimeout(poll, 1000); }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
}());
