// The import page: when a file is chosen, read its header line and pick the safest mode for it.
// No key column: only "insert" can work, and it adds every row. The key column present: "update"
// changes only customers already in the database and never adds a stray row as a new customer.
(function () {
  "use strict";
  var form = document.querySelector("input[type=file][name=file]");
  var keySelect = document.querySelector("select[name=key]");
  var config = document.getElementById("import-key-headers");
  var note = document.getElementById("import-file-note");
  if (!form || !config || !note) return;
  var headers = JSON.parse(config.textContent);

  function cells(line) {
    // The header is names, rarely quoted: a plain split with quotes stripped is enough here.
    return line.split(",").map(function (c) {
      return c.trim().replace(/^\ufeff/, "").replace(/^"(.*)"$/, "$1").trim().toLowerCase();
    });
  }

  function decode(buffer) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buffer);
    } catch (e) {
      try { return new TextDecoder("shift_jis").decode(buffer); } catch (e2) { return ""; }
    }
  }

  function chooseMode(hasKey) {
    var radio = document.querySelector("input[name=mode][value=" + (hasKey ? "update" : "insert") + "]");
    if (radio) radio.checked = true;
    note.textContent = note.getAttribute(hasKey ? "data-has-key" : "data-no-key");
    note.hidden = false;
  }

  var firstLine = null;

  function update() {
    var key = keySelect ? keySelect.value : "customer_id";
    chooseMode(cells(firstLine).some(function (name) { return headers[name] === key; }));
  }

  form.addEventListener("change", function () {
    var file = form.files && form.files[0];
    firstLine = null;
    if (!file) { note.hidden = true; return; }
    var reader = new FileReader();
    reader.onload = function () {
      var bytes = new Uint8Array(reader.result);
      var end = bytes.indexOf(10);  // the header line only: no character cut at the end
      firstLine = decode(end < 0 ? bytes : bytes.slice(0, end)).replace(/\r$/, "");
      update();
    };
    reader.readAsArrayBuffer(file.slice(0, 65536));
  });
  if (keySelect) keySelect.addEventListener("change", function () { if (firstLine !== null) update(); });
})();
