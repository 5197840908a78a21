// Small page behaviours shared by every screen (no framework, nothing fetched from elsewhere).
(function () {
  "use strict";

  // Mark the nav link of the current section (the longest matching path prefix).
  function markCurrentNav() {
    var best = null, bestLen = -1, path = window.location.pathname;
    document.querySelectorAll("header.top nav a[href]").forEach(function (a) {
      var href = a.getAttribute("href");
      var match = href === "/" ? path === "/" || path.indexOf("/customers/") === 0 : path.indexOf(href) === 0;
      if (match && href.length > bestLen) { best = a; bestLen = href.length; }
    });
    if (best) best.setAttribute("aria-current", "page");
  }

  // <select data-autosubmit> submits its form on change.
  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
  }

  // <button data-confirm="text"> asks before submitting.
  function confirms() {
    document.querySelectorAll("[data-confirm]").forEach(function (el) {
      el.addEventListener("click", function (e) {
        if (!window.confirm(el.getAttribute("data-confirm"))) e.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    markCurrentNav();
    autosubmit();
    confirms();
  });
})();
