// Poll the JSON variant of this page while extracting; reload when it has finished.
(function () {
  var box = document.getElementById("extraction");
  if (!box) return;
  function tick() {
    fetch(box.dataset.url, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j) { setTimeout(tick, 3000); return; }
        if (j.finished) { window.location.reload(); return; }
        if (j.percent !== null) {
          var bar = box.querySelector("[data-job-progress]");
          bar.classList.remove("indeterminate");
          bar.firstElementChild.style.width = j.percent + "%";
          bar.setAttribute("aria-valuenow", j.percent);
          box.querySelector("[data-job-percent]").textContent = j.percent + "%";
        }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
