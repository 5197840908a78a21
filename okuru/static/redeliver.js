// The Re-deliver page: live counts of the chosen audience (a small JSON endpoint), the link
// choice only for clicked / not clicked, the time only for a reservation.
(function () {
  "use strict";
  var form = document.getElementById("redeliver-form");
  if (!form) return;
  var url = form.getAttribute("data-counts-url");
  var link = form.querySelector("select[name=link]");
  var when = form.querySelector("input[name=when]");
  var pending = null;

  function value(name) {
    var checked = form.querySelector("input[name=" + name + "]:checked");
    return checked ? checked.value : "";
  }
  function text(id, v) { document.getElementById(id).textContent = v; }

  function refresh() {
    var audience = value("audience");
    var linked = audience === "clicked" || audience === "not_clicked";
    if (link) { link.disabled = !linked; if (!linked) link.value = ""; }
    if (when) when.disabled = value("action") !== "reserve";
    var query = "?audience=" + encodeURIComponent(audience) + "&link=" + encodeURIComponent(linked && link ? link.value : "");
    if (pending) pending.abort();
    pending = new AbortController();
    form.setAttribute("aria-busy", "true");
    fetch(url + query, { signal: pending.signal, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        form.removeAttribute("aria-busy");
        var error = document.getElementById("rd-error");
        if (!res.ok) { error.textContent = res.body.detail || ""; error.hidden = false; return; }
        error.hidden = true;
        var c = res.body;
        text("rd-matched", c.matched);
        text("rd-after-exclusions", c.after_exclusions);
        text("rd-after-duplicates", c.after_duplicates);
        var body = document.getElementById("rd-excluded");
        body.textContent = "";
        c.excluded_rows.forEach(function (row) {
          var tr = document.createElement("tr");
          var a = document.createElement("td"); a.textContent = row[1];
          var b = document.createElement("td"); b.className = "num"; b.textContent = row[2];
          tr.appendChild(a); tr.appendChild(b); body.appendChild(tr);
        });
        var prev = document.getElementById("rd-previous");
        prev.hidden = !c.previous.length;
        prev.querySelector("span").textContent = c.previous.map(function (p) { return "#" + p; }).join(" ");
        form.setAttribute("data-counted", audience);
      })
      .catch(function () { form.removeAttribute("aria-busy"); });
  }
  form.addEventListener("change", function (e) {
    if (e.target.name === "audience" || e.target.name === "link" || e.target.name === "action") refresh();
  });
  refresh();
})();
