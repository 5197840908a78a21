// Field picker: move fields between "available" and "chosen", order the chosen ones.
// The chosen <select multiple name="fields"> submits every option, in order.
(function () {
  "use strict";

  function selected(select) {
    return Array.prototype.filter.call(select.options, function (o) { return o.selected; });
  }

  function move(from, to) {
    selected(from).forEach(function (o) { to.appendChild(o); });
  }

  function shift(select, up) {
    var opts = selected(select);
    if (!up) opts.reverse();
    opts.forEach(function (o) {
      var sibling = up ? o.previousElementSibling : o.nextElementSibling;
      if (sibling && !sibling.selected) {
        select.insertBefore(o, up ? sibling : sibling.nextElementSibling);
      }
    });
  }

  function init(root) {
    var available = root.querySelector("[data-fp-available]");
    var chosen = root.querySelector("[data-fp-chosen]");
    // Start with nothing selected: selection now means "to move".
    Array.prototype.forEach.call(chosen.options, function (o) { o.selected = false; });
    root.querySelector("[data-fp-add]").addEventListener("click", function () { move(available, chosen); });
    root.querySelector("[data-fp-remove]").addEventListener("click", function () { move(chosen, available); });
    root.querySelector("[data-fp-up]").addEventListener("click", function () { shift(chosen, true); });
    root.querySelector("[data-fp-down]").addEventListener("click", function () { shift(chosen, false); });
    available.addEventListener("dblclick", function () { move(available, chosen); });
    chosen.addEventListener("dblclick", function () { move(chosen, available); });
    var form = root.closest("form");
    if (form) {
      form.addEventListener("submit", function () {
        Array.prototype.forEach.call(chosen.options, function (o) { o.selected = true; });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-fp]").forEach(init);
  });
})();
