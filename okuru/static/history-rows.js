// Delivery history rows (mailings/_history.html): the link list of a row offers only the links
// of the row's target mail. Every option carries data-mail (forms.MailOptionSelect); "any link"
// has none and is always offered. A link chosen for another mail is cleared when the target
// changes, so the row never posts a link the server would refuse.
(function () {
  "use strict";

  function sync(row) {
    var source = row.querySelector("select[data-history-source]");
    var link = row.querySelector("select[data-history-link]");
    if (!source || !link) return;
    var chosen = source.options[source.selectedIndex];
    var mail = chosen ? chosen.getAttribute("data-mail") : null;
    Array.prototype.forEach.call(link.options, function (o) {
      var own = o.getAttribute("data-mail");
      var offered = own === null || (mail !== null && own === mail);
      o.hidden = !offered;
      o.disabled = !offered;
    });
    var current = link.options[link.selectedIndex];
    if (current && current.disabled) link.value = "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("tr[data-history-row]").forEach(function (row) {
      sync(row);
      var source = row.querySelector("select[data-history-source]");
      if (source) source.addEventListener("change", function () { sync(row); });
    });
  });
})();
