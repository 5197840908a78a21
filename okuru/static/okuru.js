// Small page behaviours shared by every screen (no framework, nothing fetched from elsewhere).
(function () {
  "use strict";

  // Mark the menu link of the current page (the longest matching path prefix) and its menu.
  function markCurrentNav() {
    var best = null, bestLen = -1, path = window.location.pathname;
    document.querySelectorAll("header.top .menu-panel a[href]").forEach(function (a) {
      var href = a.getAttribute("href");
      var match = href === "/" ? path === "/" || path.indexOf("/customers/") === 0 : path.indexOf(href) === 0;
      if (match && href.length > bestLen) { best = a; bestLen = href.length; }
    });
    if (!best) return;
    best.setAttribute("aria-current", "page");
    var menu = best.closest("details.menu");
    if (menu) menu.classList.add("current");
  }

  // Menus are <details class="menu"> (nav.html): native disclosures that the keyboard already
  // opens with Enter or Space. Here: one open at a time; Escape closes it and gives the focus
  // back to its summary; a click or the focus going elsewhere closes it; arrow keys move
  // between its links.
  function menus() {
    var all = Array.prototype.slice.call(document.querySelectorAll("details.menu"));
    if (!all.length) return;
    function items(menu) {
      return Array.prototype.slice.call(menu.querySelectorAll(".menu-panel a, .menu-panel button"));
    }
    function closeOthers(keep) {
      all.forEach(function (d) { if (d !== keep && d.open) d.open = false; });
    }
    all.forEach(function (menu) {
      menu.addEventListener("toggle", function () { if (menu.open) closeOthers(menu); });
      menu.addEventListener("keydown", function (e) {
        if (e.key === "Escape" && menu.open) {
          menu.open = false;
          menu.querySelector("summary").focus();
          e.preventDefault();
          return;
        }
        if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
        var list = items(menu);
        if (!list.length) return;
        menu.open = true;
        var i = list.indexOf(document.activeElement);
        var next = e.key === "ArrowDown" ? (i + 1) % list.length : (i <= 0 ? list.length : i) - 1;
        list[next].focus();
        e.preventDefault();
      });
    });
    function closeOutside(e) {
      all.forEach(function (d) { if (d.open && !d.contains(e.target)) d.open = false; });
    }
    document.addEventListener("click", closeOutside);
    document.addEventListener("focusin", closeOutside);
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

  // <el data-width="42"> gets width 42%: progress bars, set here because the
  // Content-Security-Policy refuses style="" attributes.
  function widths() {
    document.querySelectorAll("[data-width]").forEach(function (el) {
      var percent = Number(el.getAttribute("data-width"));
      if (percent >= 0 && percent <= 100) el.style.width = percent + "%";
    });
  }

  // A table wider than the screen scrolls sideways inside its .table-wrap: the keyboard must
  // reach it (to scroll with the arrow keys) and a screen reader must name it. Only wrappers
  // that do scroll become such regions, so the others add no stop to the tab order.
  function scrollRegions() {
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
      if (scrolls && !wrap.hasAttribute("tabindex")) {
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        wrap.setAttribute("data-scroll-region", "");
        if (!wrap.hasAttribute("aria-label")) wrap.setAttribute("aria-label", regionName(wrap));
      } else if (!scrolls && wrap.hasAttribute("data-scroll-region")) {
        ["tabindex", "role", "data-scroll-region", "aria-label"].forEach(function (a) { wrap.removeAttribute(a); });
      }
    });
  }

  function regionName(wrap) {
    var caption = wrap.querySelector("caption");
    if (caption) return caption.textContent.trim();
    var all = Array.prototype.slice.call(document.querySelectorAll("main h1, main h2, main h3"));
    var before = all.filter(function (h) {
      return h.compareDocumentPosition(wrap) & Node.DOCUMENT_POSITION_FOLLOWING;
    });
    var heading = before.length ? before[before.length - 1] : null;
    return (heading ? heading.textContent : document.title).replace(/\s+/g, " ").trim();
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(scrollRegions, 150);
  });

  document.addEventListener("DOMContentLoaded", function () {
    widths();
    scrollRegions();
    markCurrentNav();
    menus();
    autosubmit();
    confirms();
  });
})();
