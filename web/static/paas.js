/* paas web UI: the live log views (Server-Sent Events). Everything else is
   plain forms and htmx attributes. */
(function () {
  "use strict";

  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }

  function append(el, text) {
    var stick = nearBottom(el);
    el.appendChild(document.createTextNode(text));
    if (stick) { el.scrollTop = el.scrollHeight; }
  }

  /* A release's build log while it runs: each event carries a chunk of the
     file (JSON string); "end" says the release finished, and the page is
     reloaded to show the outcome and timings. */
  function followBuild(el) {
    var source = new EventSource(el.dataset.stream);
    source.onmessage = function (e) { append(el, JSON.parse(e.data)); };
    source.addEventListener("end", function () {
      source.close();
      window.location.reload();
    });
  }

  /* Runtime logs: live tail of the chosen process type, with pause/resume
     (lines that arrive while paused are kept and shown on resume). */
  function followRuntime(el) {
    var select = document.getElementById("process");
    var pause = document.getElementById("pause");
    var state = document.getElementById("log-state");
    var source = null, paused = false, held = [];

    function connect() {
      if (source) { source.close(); }
      el.textContent = "";
      held = [];
      source = new EventSource(el.dataset.stream + "?process=" + encodeURIComponent(select.value));
      state.textContent = "live";
      source.onmessage = function (e) {
        var line = JSON.parse(e.data);
        if (paused) { held.push(line); } else { append(el, line); }
      };
      source.addEventListener("problem", function (e) {
        source.close();
        state.textContent = JSON.parse(e.data);
      });
      source.addEventListener("end", function () {
        source.close();
        state.textContent = "the containers stopped";
      });
    }
    select.addEventListener("change", connect);
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      state.textContent = paused ? "paused" : "live";
      if (!paused) { append(el, held.join("")); held = []; }
    });
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var build = document.querySelector("pre[data-stream][data-kind=build]");
    if (build) { followBuild(build); }
    var runtime = document.querySelector("pre[data-stream][data-kind=runtime]");
    if (runtime) { followRuntime(runtime); }
  });
})();
