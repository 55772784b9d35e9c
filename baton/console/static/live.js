// The live counts in every page's header: one small GET of /api/counts every few seconds.
// Only numbers are written, as text: nothing from the answer becomes markup.
(function () {
  "use strict";
  var box = document.getElementById("counts");
  if (!box) { return; }
  var every = Number(box.getAttribute("data-refresh-ms")) || 3000;

  function refresh() {
    fetch(box.getAttribute("data-src"), { cache: "no-store", credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("status " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        box.querySelectorAll("[data-status]").forEach(function (cell) {
          var n = data.counts[cell.getAttribute("data-status")];
          cell.textContent = typeof n === "number" ? String(n) : "?";
        });
        box.classList.remove("stale");
        box.setAttribute("data-updated", String(data.at));
      })
      .catch(function () { box.classList.add("stale"); });
  }

  refresh();
  window.setInterval(refresh, every);
})();
