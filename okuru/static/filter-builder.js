// Filter builder (絞り込み条件): edits the JSON tree of okuru/customers/filters.py in a hidden
// input, and shows the live count from the count endpoint (debounced, stale answers dropped).
//
//   <div data-fb data-input="ID" data-config="ID" data-count-url="URL" data-status="ID"
//        data-count-with="ID">
//
// data-count-with (optional): an element whose named fields are sent with the count request,
// and whose changes refresh the count (a mail's delivery history rows, which narrow the
// builder's tree further).
//
// Tree: {"match": "all"|"any", "conditions": [{"field", "op", "value", "value2"} | TREE]}.
// Conditions of other kinds ({"kind": ...}, added by later features) are kept as they are.
(function () {
  "use strict";

  var MAX_DEPTH = 2; // the top group, a group inside it, and one more level
  var DEBOUNCE_MS = 350;
  var RANGE_OPS = ["has_value", "no_value", "eq", "ne", "lt", "gt", "between", "in"];
  var TEXT_OPS = ["has_value", "no_value", "eq", "ne", "contains", "starts_with", "in"];
  var OPS = {
    text: TEXT_OPS,
    email: TEXT_OPS,
    select: ["has_value", "no_value", "eq", "ne", "in"],
    multiselect: ["has_value", "no_value", "in", "ne"],
    integer: RANGE_OPS,
    number: RANGE_OPS,
    date: RANGE_OPS,
    datetime: RANGE_OPS,
    flag: ["eq", "ne"]
  };
  var LIST_OPS = ["in"];

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function option(value, label, selected) {
    var o = el("option", { value: value, text: label });
    if (selected) o.selected = true;
    return o;
  }

  function Builder(root) {
    this.root = root;
    this.input = document.getElementById(root.getAttribute("data-input"));
    this.config = JSON.parse(document.getElementById(root.getAttribute("data-config")).textContent);
    this.countUrl = root.getAttribute("data-count-url");
    this.countWith = document.getElementById(root.getAttribute("data-count-with") || "");
    this.words = this.config.words;
    this.fields = {};
    var self = this;
    this.config.fields.forEach(function (f) { self.fields[f.key] = f; });
    this.tree = this.parse(this.input.value);
    this.seq = 0;
    this.timer = null;
    this.setupStatus(document.getElementById(root.getAttribute("data-status")));
    this.render();
    this.refreshCount();
    if (this.countWith) {
      this.countWith.addEventListener("change", function () { self.changed(); });
    }
  }

  // The named fields of the data-count-with element, as query parameters.
  Builder.prototype.extraParams = function () {
    if (!this.countWith) return "";
    var parts = [];
    this.countWith.querySelectorAll("input[name], select[name]").forEach(function (f) {
      if ((f.type === "checkbox" || f.type === "radio") && !f.checked) return;
      parts.push(encodeURIComponent(f.name) + "=" + encodeURIComponent(f.value));
    });
    return parts.length ? "&" + parts.join("&") : "";
  };

  Builder.prototype.parse = function (text) {
    try {
      var tree = JSON.parse(text || "{}");
      if (tree && typeof tree === "object" && !Array.isArray(tree)) {
        tree.match = tree.match === "any" ? "any" : "all";
        if (!Array.isArray(tree.conditions)) tree.conditions = [];
        return tree;
      }
    } catch (e) { /* fall through: start empty */ }
    return { match: "all", conditions: [] };
  };

  Builder.prototype.setupStatus = function (status) {
    this.countEl = el("span", { className: "fb-count", "aria-live": "polite" });
    this.errorEl = el("span", { className: "fb-error", role: "alert" });
    if (status) {
      status.classList.add("fb-status");
      status.appendChild(this.countEl);
      status.appendChild(this.errorEl);
    }
  };

  Builder.prototype.defaultField = function () {
    if (this.fields.email) return "email";
    return this.config.fields.length ? this.config.fields[0].key : "";
  };

  Builder.prototype.opsFor = function (field) {
    return field ? OPS[field.type] || TEXT_OPS : TEXT_OPS;
  };

  Builder.prototype.opLabel = function (op, field) {
    var ops = this.config.ops, type = field ? field.type : "";
    if ((type === "date" || type === "datetime") && (op === "lt" || op === "gt")) return ops[op + "_date"];
    if (type === "multiselect" && (op === "in" || op === "ne")) return ops[op + "_multi"];
    return ops[op] || op;
  };

  Builder.prototype.newCondition = function () {
    var key = this.defaultField();
    var cond = { field: key, op: this.opsFor(this.fields[key])[0] };
    this.fixValue(cond);
    return cond;
  };

  // Give a condition the value shape its field and operator need.
  Builder.prototype.fixValue = function (cond) {
    var field = this.fields[cond.field];
    var type = field ? field.type : "text";
    if (cond.op === "has_value" || cond.op === "no_value") {
      delete cond.value;
      delete cond.value2;
      return;
    }
    var wantList = LIST_OPS.indexOf(cond.op) >= 0 || type === "multiselect";
    if (wantList && !Array.isArray(cond.value)) {
      cond.value = cond.value === undefined || cond.value === "" ? [] : [String(cond.value)];
    } else if (!wantList && Array.isArray(cond.value)) {
      cond.value = cond.value.length ? cond.value[0] : "";
    }
    if (cond.value === undefined) {
      if (type === "flag") cond.value = "1";
      else if (type === "select" && field.choices.length) cond.value = field.choices[0];
      else cond.value = "";
    }
    if (cond.op === "between") {
      if (cond.value2 === undefined) cond.value2 = "";
    } else {
      delete cond.value2;
    }
  };

  Builder.prototype.changed = function () {
    this.input.value = JSON.stringify(this.tree);
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.refreshCount(); }, DEBOUNCE_MS);
  };

  Builder.prototype.restructure = function () {
    this.render();
    this.changed();
  };

  Builder.prototype.refreshCount = function () {
    if (!this.countUrl) return;
    var self = this, mine = ++this.seq;
    this.countEl.classList.add("busy");
    if (!this.countEl.textContent) this.countEl.textContent = this.words.counting;
    var url = this.countUrl + "?filter=" + encodeURIComponent(JSON.stringify(this.tree)) +
      this.extraParams();
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (mine !== self.seq) return; // a newer request is on its way
        self.countEl.classList.remove("busy");
        if (data.error) {
          self.countEl.textContent = "";
          self.errorEl.textContent = data.error;
        } else {
          self.countEl.textContent = data.text;
          self.errorEl.textContent = "";
        }
      })
      .catch(function () {
        if (mine === self.seq) self.countEl.classList.remove("busy");
      });
  };

  Builder.prototype.render = function () {
    this.root.textContent = "";
    this.root.appendChild(this.renderGroup(this.tree, null, 0));
  };

  Builder.prototype.renderGroup = function (group, parent, depth) {
    var self = this, w = this.words;
    var match = el("select", { className: "fb-match", "aria-label": w.all + " / " + w.any }, [
      option("all", w.all, group.match !== "any"),
      option("any", w.any, group.match === "any")
    ]);
    match.addEventListener("change", function () { group.match = match.value; self.restructure(); });
    var head = el("div", { className: "fb-head" }, [match]);
    if (parent) {
      var remove = el("button", { type: "button", className: "fb-remove", title: w.removeGroup, "aria-label": w.removeGroup, text: "×" });
      remove.addEventListener("click", function () {
        parent.conditions.splice(parent.conditions.indexOf(group), 1);
        self.restructure();
      });
      head.appendChild(remove);
    }
    var body = el("div", { className: "fb-body" });
    if (!group.conditions.length) {
      body.appendChild(el("div", { className: "fb-empty", text: parent ? "" : w.empty }));
    }
    group.conditions.forEach(function (cond, i) {
      var join = el("span", { className: "fb-join", text: i > 0 ? (group.match === "any" ? w.or : w.and) : "" });
      if (cond && cond.conditions) {
        if (i > 0) body.appendChild(el("div", { className: "fb-join-line" }, [join]));
        body.appendChild(self.renderGroup(cond, group, depth + 1));
      } else {
        var row = self.renderCondition(cond, group);
        row.insertBefore(join, row.firstChild);
        body.appendChild(row);
      }
    });
    var addCond = el("button", { type: "button", className: "btn-secondary btn-small", text: w.addCondition });
    addCond.addEventListener("click", function () {
      group.conditions.push(self.newCondition());
      self.restructure();
    });
    var add = el("div", { className: "fb-add" }, [addCond]);
    if (depth < MAX_DEPTH) {
      var addGroup = el("button", { type: "button", className: "btn-secondary btn-small", text: w.addGroup });
      addGroup.addEventListener("click", function () {
        group.conditions.push({ match: group.match === "all" ? "any" : "all", conditions: [self.newCondition()] });
        self.restructure();
      });
      add.appendChild(addGroup);
    }
    return el("div", { className: "fb-group" }, [head, body, add]);
  };

  Builder.prototype.removeButton = function (group, cond) {
    var self = this;
    var b = el("button", { type: "button", className: "fb-remove", title: this.words.remove, "aria-label": this.words.remove, text: "×" });
    b.addEventListener("click", function () {
      group.conditions.splice(group.conditions.indexOf(cond), 1);
      self.restructure();
    });
    return b;
  };

  Builder.prototype.renderCondition = function (cond, group) {
    var self = this, w = this.words;
    var row = el("div", { className: "fb-cond" });
    if (!cond || typeof cond !== "object" || (cond.kind && cond.kind !== "field")) {
      row.appendChild(el("span", { className: "badge", text: w.otherCondition + ": " + (cond && cond.kind) }));
      row.appendChild(this.removeButton(group, cond));
      return row;
    }
    var field = this.fields[cond.field];
    var fieldSel = el("select", { className: "fb-field", "aria-label": w.field });
    if (!field) fieldSel.appendChild(option(cond.field || "", w.unknownField + ": " + (cond.field || ""), true));
    this.config.fields.forEach(function (f) { fieldSel.appendChild(option(f.key, f.label, f.key === cond.field)); });
    fieldSel.addEventListener("change", function () {
      var next = self.fields[fieldSel.value];
      if (self.opsFor(next).indexOf(cond.op) < 0) cond.op = self.opsFor(next)[0];
      cond.field = fieldSel.value;
      delete cond.value;
      delete cond.value2;
      self.fixValue(cond);
      self.restructure();
    });
    var opSel = el("select", { className: "fb-op", "aria-label": w.operator });
    var ops = this.opsFor(field);
    if (ops.indexOf(cond.op) < 0) opSel.appendChild(option(cond.op || "", cond.op || "", true));
    ops.forEach(function (op) { opSel.appendChild(option(op, self.opLabel(op, field), op === cond.op)); });
    opSel.addEventListener("change", function () {
      cond.op = opSel.value;
      self.fixValue(cond);
      self.restructure();
    });
    row.appendChild(fieldSel);
    row.appendChild(opSel);
    this.valueEditors(cond, field).forEach(function (node) { row.appendChild(node); });
    row.appendChild(this.removeButton(group, cond));
    return row;
  };

  Builder.prototype.valueEditors = function (cond, field) {
    var self = this, w = this.words, type = field ? field.type : "text";
    if (cond.op === "has_value" || cond.op === "no_value") return [];
    if (type === "flag") {
      var flag = el("select", { className: "fb-value", "aria-label": w.value }, [
        option("1", w.yes, String(cond.value) !== "0"),
        option("0", w.no, String(cond.value) === "0")
      ]);
      flag.addEventListener("change", function () { cond.value = flag.value; self.changed(); });
      return [flag];
    }
    if (field && field.choices.length && (type === "multiselect" || (type === "select" && cond.op === "in"))) {
      return [this.checkboxes(cond, field)];
    }
    if (type === "select" && field && (cond.op === "eq" || cond.op === "ne")) {
      var sel = el("select", { className: "fb-value", "aria-label": w.value });
      if (field.choices.indexOf(cond.value) < 0) sel.appendChild(option(cond.value || "", cond.value || "—", true));
      field.choices.forEach(function (c) { sel.appendChild(option(c, c, c === cond.value)); });
      sel.addEventListener("change", function () { cond.value = sel.value; self.changed(); });
      return [sel];
    }
    if (cond.op === "in") {
      var area = el("textarea", { className: "fb-value", rows: "3", placeholder: w.onePerLine, title: w.onePerLine, "aria-label": w.value });
      area.value = (cond.value || []).join("\n");
      area.addEventListener("input", function () {
        cond.value = area.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
        self.changed();
      });
      return [area];
    }
    var first = this.input1(cond, "value", type);
    if (cond.op !== "between") return [first];
    return [first, el("span", { className: "fb-and", text: w.and }), this.input1(cond, "value2", type)];
  };

  Builder.prototype.input1 = function (cond, key, type) {
    var self = this;
    var attrs = { className: "fb-value", type: "text", "aria-label": this.words.value };
    if (type === "date") attrs.type = "date";
    if (type === "datetime") { attrs.type = "datetime-local"; attrs.step = "1"; }
    if (type === "integer" || type === "number") attrs.inputmode = "decimal";
    var input = el("input", attrs);
    var value = cond[key] === undefined || cond[key] === null ? "" : String(cond[key]);
    input.value = type === "datetime" ? value.replace(" ", "T") : value;
    input.addEventListener("input", function () { cond[key] = input.value; self.changed(); });
    return input;
  };

  Builder.prototype.checkboxes = function (cond, field) {
    var self = this, box = el("span", { className: "fb-checks" });
    if (!Array.isArray(cond.value)) cond.value = [];
    field.choices.forEach(function (c) {
      var cb = el("input", { type: "checkbox", value: c });
      cb.checked = cond.value.indexOf(c) >= 0;
      cb.addEventListener("change", function () {
        cond.value = field.choices.filter(function (x) {
          return x === c ? cb.checked : cond.value.indexOf(x) >= 0;
        });
        self.changed();
      });
      box.appendChild(el("label", {}, [cb, document.createTextNode(" " + ((field.choiceLabels || {})[c] || c))]));
    });
    return box;
  };

  // A <select data-view-loader> loads the chosen view's own filter: drop ours and submit.
  function viewLoaders() {
    document.querySelectorAll("select[data-view-loader]").forEach(function (sel) {
      sel.addEventListener("change", function () {
        var input = document.getElementById(sel.getAttribute("data-view-loader"));
        if (input) input.disabled = true;
        sel.form.submit();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-fb]").forEach(function (root) { root.builder = new Builder(root); });
    viewLoaders();
  });
})();
