// The job page (accounts/job.html): poll its JSON variant every second; reload once the job
// has finished so that the result (and download link) render server-side.
(function () {
  var box = document.getElementById("job");
  if (!box || box.dataset.finished === "1") return;
  var lang = document.documentElement.lang;
  function num(n) { return Number(n).toLocaleString(lang); }
  function tick() {
    fetch(box.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j) { setTimeout(tick, 3000); return; }
        if (j.finished) { window.location.reload(); return; }
        var bar = box.querySelector("[data-job-progress]");
        if (j.percent !== null) {
          bar.classList.remove("indeterminate");
          bar.firstElementChild.style.width = j.percent + "%";
          bar.setAttribute("aria-valuenow", j.percent);
          box.querySelector("[data-job-percent]").textContent = j.percent + "%";
        }
        box.querySelector("[data-job-done]").textContent = num(j.done);
        if (j.total !== null) {
          box.querySelector("[data-job-total]").textContent = num(j.total);
          box.querySelector("[data-job-of]").hidden = false;
        }
        var status = document.querySelector("[data-job-status]");
        if (status) {
          status.textContent = j.status_display;
          status.className = "badge" + ({running: " info", succeeded: " ok", failed: " danger"}[j.status] || "");
        }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
