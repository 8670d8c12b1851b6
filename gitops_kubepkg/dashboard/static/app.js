// The dashboard's browser side: hash routes render pages from the controller's JSON API
// (gitops_kubepkg/dashboard/API.md), live updates come from the /api/stream server-sent events.
//
// Everything the API returns is user-controlled (names, messages, URLs come from tenants'
// repositories), so the DOM is built with createElement and textContent only: no innerHTML,
// no attribute built from data except href values this file composes from encoded parts.
// No framework, no build step, no asset from anywhere but this origin.
"use strict";

(() => {
  // ---------------------------------------------------------------- DOM building (escaped)

  const SVG_NS = "http://www.w3.org/2000/svg";

  /** h("a", {href: "#/", class: "x", onclick: fn}, child, "text", [more]) */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (key === "class") {
        el.className = value;
      } else if (value === true) {
        el.setAttribute(key, "");
      } else {
        el.setAttribute(key, String(value));
      }
    }
    append(el, children);
    return el;
  }

  /** Replace ``el``'s children; null, undefined and false children are left out. */
  function fill(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // Icons are fixed path data from this file, never from the API.
  const ICONS = {
    ok: "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2Z",
    progress: "M12 4V1L8 5l4 4V6a6 6 0 1 1-6 6H4a8 8 0 1 0 8-8Z",
    bad: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20Zm1 15h-2v-2h2v2Zm0-4h-2V7h2v6Z",
    stalled: "M1 21h22L12 2 1 21Zm12-3h-2v-2h2v2Zm0-4h-2v-4h2v4Z",
    paused: "M6 19h4V5H6v14Zm8-14v14h4V5h-4Z",
    unknown: "M11 18h2v-2h-2v2Zm1-16a10 10 0 1 0 0 20 10 10 0 0 0 0-20Zm0 18a8 8 0 1 1 0-16 8 8 0 0 1 0 16Zm0-14a4 4 0 0 0-4 4h2a2 2 0 1 1 4 0c0 2-3 1.75-3 5h2c0-2.25 3-2.5 3-5a4 4 0 0 0-4-4Z",
    sync: "M12 4V1L8 5l4 4V6c3.3 0 6 2.7 6 6 0 1-.3 2-.7 2.8l1.5 1.5A8 8 0 0 0 12 4Zm0 14c-3.3 0-6-2.7-6-6 0-1 .3-2 .7-2.8L5.2 7.7A8 8 0 0 0 12 20v3l4-4-4-4v3Z",
    up: "M4 12l1.4 1.4L11 7.8V20h2V7.8l5.6 5.6L20 12l-8-8-8 8Z",
    warn: "M1 21h22L12 2 1 21Zm12-3h-2v-2h2v2Zm0-4h-2v-4h2v4Z",
  };

  function icon(name, label) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon");
    if (label) {
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", label);
    } else {
      svg.setAttribute("aria-hidden", "true");
    }
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name] || ICONS.unknown);
    svg.append(path);
    return svg;
  }

  // ---------------------------------------------------------------- health

  // Health words the API uses (API.md), each with a colour class and an icon so colour is
  // never the only signal.
  const HEALTH = {
    ready: { icon: "ok", cls: "h-ok" },
    true: { icon: "ok", cls: "h-ok" },
    progressing: { icon: "progress", cls: "h-progress" },
    reconciling: { icon: "progress", cls: "h-progress" },
    degraded: { icon: "bad", cls: "h-bad" },
    failed: { icon: "bad", cls: "h-bad" },
    false: { icon: "bad", cls: "h-bad" },
    stalled: { icon: "stalled", cls: "h-stalled" },
    suspended: { icon: "paused", cls: "h-paused" },
    unknown: { icon: "unknown", cls: "h-unknown" },
    current: { icon: "ok", cls: "h-ok" },
    inprogress: { icon: "progress", cls: "h-progress" },
    notready: { icon: "bad", cls: "h-bad" },
  };
  const HEALTH_ORDER = ["Stalled", "Degraded", "Progressing", "Unknown", "Suspended", "Ready"];

  function healthBadge(word) {
    const text = word === undefined || word === null || word === "" ? "Unknown" : String(word);
    const look = HEALTH[text.toLowerCase()] || HEALTH.unknown;
    return h("span", { class: `badge ${look.cls}`, "data-health": text }, icon(look.icon), text);
  }

  function readyWord(repo) {
    if (repo.suspended) return "Suspended";
    if (repo.ready === true || repo.ready === "True") return "Ready";
    if (repo.ready === false || repo.ready === "False") return "Failed";
    return "Unknown";
  }

  /** "ns/name" -> "name" (the API names Repositories as namespace/name). */
  function localName(ref) {
    const s = plain(ref);
    return s.includes("/") ? s.slice(s.indexOf("/") + 1) : s;
  }

  // ---------------------------------------------------------------- formatting

  function short(commit) {
    return commit ? String(commit).slice(0, 12) : "";
  }

  /** A commit as code (its full id on hover), nothing when there is none yet. */
  function commitCode(commit) {
    return commit ? h("code", { class: "commit", title: plain(commit) }, short(commit)) : "";
  }

  function ago(when) {
    if (!when) return "";
    const t = Date.parse(when);
    if (Number.isNaN(t)) return String(when);
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function time(when) {
    if (!when) return "";
    return h("time", { datetime: when, title: String(when) }, ago(when));
  }

  function bytes(n) {
    if (n === undefined || n === null || n === "") return "";
    let v = Number(n);
    if (!Number.isFinite(v)) return String(n);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
  }

  function seg(s) {
    return encodeURIComponent(String(s));
  }

  function kubepkgHref(namespace, name) {
    return `#/kubepkg/${seg(namespace)}/${seg(name)}`;
  }

  function plain(value) {
    if (value === undefined || value === null) return "";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // ---------------------------------------------------------------- API

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (options && options.body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-Requested-With"] = "dashboard";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = { message: text };
      }
    }
    if (!response.ok) {
      const message = (data && (data.message || data.error)) || `${response.status} ${response.statusText}`;
      throw new HttpError(response.status, String(message));
    }
    return data;
  }

  // ---------------------------------------------------------------- session and banner

  const state = {
    session: null, // {authenticated, user, auth, actions: {enabled, reconcile, promote, approve}}
    route: null,
    stream: null,
  };

  function banner(message, kind) {
    const el = document.getElementById("banner");
    el.replaceChildren();
    if (!message) {
      el.hidden = true;
      return;
    }
    el.className = `banner ${kind || "error"}`;
    append(el, [icon(kind === "info" ? "ok" : "warn"), h("span", {}, message)]);
    el.hidden = false;
  }

  async function loadSession() {
    try {
      const who = await api("/api/whoami");
      state.session = Object.assign({ authenticated: true }, who);
    } catch (e) {
      if (e.status === 401) state.session = { authenticated: false };
      else throw e;
    }
    const user = document.getElementById("user");
    const logout = document.getElementById("logout");
    user.textContent = state.session.user ? String(state.session.user) : "";
    logout.hidden = !(state.session.authenticated && state.session.auth !== false);
    return state.session;
  }

  // Which resource's `patch` each action needs (API.md, /api/permissions).
  const ACTION_RESOURCE = { reconcile: "repositories", promote: "repositories", approve: "repositories" };

  /**
   * Whether to offer an action: the server must have actions on (whoami `actions`), and for a
   * row, /api/permissions must say this user may patch what the action patches in its namespace.
   * Without a row: whether any namespace allows it (to decide whether a column is worth showing).
   */
  function can(action, row, resource) {
    if (!state.session || state.session.actions !== true) return false;
    const perms = state.permissions;
    if (!perms || !perms.namespaces) return !perms; // an older server: whoami decides
    const what = resource || ACTION_RESOURCE[action];
    if (!row) return Object.values(perms.namespaces).some((n) => n[what]);
    const ns = perms.namespaces[row.namespace];
    return Boolean(ns && ns[what]);
  }

  async function loadPermissions() {
    if (!state.session || state.session.actions !== true) {
      state.permissions = { namespaces: {} };
      return;
    }
    try {
      state.permissions = await api("/api/permissions");
    } catch (e) {
      if (e.status === 404) state.permissions = null; // an older server: whoami decides
      else throw e;
    }
  }

  function loginPage(main, reason) {
    stopStream();
    setLive("offline");
    const input = h("input", {
      id: "token",
      name: "token",
      type: "password",
      autocomplete: "off",
      spellcheck: "false",
      required: true,
      placeholder: "eyJhbGciOi…",
    });
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      {
        class: "login card",
        onsubmit: async (event) => {
          event.preventDefault();
          error.textContent = "";
          try {
            await api("/api/login", { body: { token: input.value.trim() } });
            input.value = "";
            await start();
          } catch (e) {
            error.textContent = e.status === 401 ? `not signed in: ${e.message}` : e.message || "login failed";
          }
        },
      },
      h("h1", {}, "Sign in"),
      h(
        "p",
        { class: "muted" },
        "Paste a Kubernetes bearer token (",
        h("code", {}, "kubectl create token NAME"),
        "). You see the objects its RBAC lets you get.",
      ),
      reason ? h("p", { class: "form-error" }, reason) : null,
      h("label", { for: "token" }, "Token"),
      input,
      error,
      h("button", { type: "submit", class: "primary" }, "Sign in"),
    );
    fill(main, form);
    input.focus();
  }

  // ---------------------------------------------------------------- tables that sort and filter

  /**
   * columns: [{key, label, value(row) -> sortable, cell(row) -> node|string, cls}]
   * options: {id, empty, filter: true, sort: key, rowClass(row)}
   */
  function table(columns, rows, options) {
    const opts = options || {};
    const tableState = (state.tables[opts.id] = state.tables[opts.id] || {
      sort: opts.sort || columns[0].key,
      desc: Boolean(opts.desc),
      filter: "",
    });
    const wrap = h("div", { class: "table-wrap" });
    const tbody = h("tbody");
    const count = h("span", { class: "muted count" });
    const valueOf = (col, row) => (col.value ? col.value(row) : row[col.key]);
    const textOf = (row) =>
      columns
        .map((c) => plain(valueOf(c, row)))
        .join(" ")
        .toLowerCase();
    const heads = columns.map((col) => {
      const th = h(
        "th",
        { scope: "col", class: col.cls },
        h(
          "button",
          {
            type: "button",
            class: "sort",
            onclick: () => {
              if (tableState.sort === col.key) tableState.desc = !tableState.desc;
              else {
                tableState.sort = col.key;
                tableState.desc = false;
              }
              draw();
            },
          },
          col.label,
        ),
      );
      return th;
    });

    function draw() {
      const needle = tableState.filter.trim().toLowerCase();
      const col = columns.find((c) => c.key === tableState.sort) || columns[0];
      const shown = rows.filter((r) => !needle || textOf(r).includes(needle));
      shown.sort((a, b) => {
        const x = valueOf(col, a);
        const y = valueOf(col, b);
        let d;
        if (typeof x === "number" && typeof y === "number") d = x - y;
        else d = plain(x).localeCompare(plain(y), undefined, { numeric: true });
        return tableState.desc ? -d : d;
      });
      heads.forEach((th, i) => {
        const key = columns[i].key;
        th.setAttribute(
          "aria-sort",
          key === tableState.sort ? (tableState.desc ? "descending" : "ascending") : "none",
        );
      });
      tbody.replaceChildren(
        ...shown.map((row) =>
          h(
            "tr",
            { class: opts.rowClass ? opts.rowClass(row) : undefined },
            columns.map((c) =>
              h("td", { class: c.cls, "data-label": c.label }, c.cell ? c.cell(row) : plain(valueOf(c, row))),
            ),
          ),
        ),
      );
      if (!shown.length) {
        tbody.append(
          h("tr", { class: "empty" }, h("td", { colspan: columns.length }, rows.length ? "Nothing matches the filter." : opts.empty || "Nothing here yet.")),
        );
      }
      count.textContent = needle ? `${shown.length} of ${rows.length}` : `${rows.length}`;
    }

    const tools = h("div", { class: "table-tools" });
    if (opts.filter !== false) {
      const input = h("input", {
        id: opts.id ? `${opts.id}-filter` : undefined,
        type: "search",
        placeholder: "Filter",
        "aria-label": `filter ${opts.title || "table"}`,
        value: tableState.filter,
        oninput: (e) => {
          tableState.filter = e.target.value;
          draw();
        },
      });
      tools.append(input);
    }
    tools.append(count);
    wrap.append(h("table", { id: opts.id }, h("thead", {}, h("tr", {}, heads)), tbody));
    draw();
    return h("div", { class: "table-block" }, tools, wrap);
  }

  function section(title, ...body) {
    return h("section", { class: "card" }, h("h2", {}, title), body);
  }

  // ---------------------------------------------------------------- actions

  async function act(button, path, body, done) {
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "…";
    try {
      const answer = await api(path, { body });
      banner((answer && answer.message) || `${label}: done`, "info");
      if (done) done(answer);
    } catch (e) {
      banner(`${label}: ${e.message}`);
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  function reconcileButton(kind, namespace, name) {
    if (!can("reconcile", { namespace }, kind === "KubePkg" ? "kubepkgs" : "repositories")) return null;
    const b = h("button", { type: "button", class: "small", "data-action": "reconcile" }, "Reconcile now");
    b.addEventListener("click", () => act(b, "/api/actions/reconcile", { kind, namespace, name }));
    return b;
  }

  // ---------------------------------------------------------------- pages

  async function overviewPage(main) {
    const data = await api("/api/overview");
    const repos = data.repositories || [];
    const pkgs = data.kubepkgs || [];
    const upgrades = data.upgrades || [];
    const pkgByKey = new Map(pkgs.map((p) => [`${p.namespace}/${p.name}`, p]));
    // What to promote: the catalog package (the tag's "<package>/v<version>") into the
    // deployment Repository the KubePkg came from.
    const promotion = (u) => {
      const pkg = pkgByKey.get(`${u.namespace}/${u.name}`) || {};
      const tag = plain(u.tag);
      return {
        namespace: u.namespace,
        name: localName(pkg.repository),
        package: tag.includes("/v") ? tag.slice(0, tag.lastIndexOf("/v")) : u.name,
        version: u.available,
        // The package is deployed already: a three-way merge that keeps local edits, as
        // `promote ... --upgrade` does.
        upgrade: true,
      };
    };

    const counts = {};
    if (data.counts && data.counts.kubepkgs) Object.assign(counts, data.counts.kubepkgs);
    else for (const p of pkgs) counts[p.health || "Unknown"] = (counts[p.health || "Unknown"] || 0) + 1;
    const summary = h(
      "div",
      { class: "summary", "aria-label": "KubePkgs by health" },
      HEALTH_ORDER.filter((w) => counts[w]).map((w) =>
        h("div", { class: "tile" }, healthBadge(w), h("strong", {}, String(counts[w]))),
      ),
      Object.keys(counts)
        .filter((w) => !HEALTH_ORDER.includes(w))
        .map((w) => h("div", { class: "tile" }, healthBadge(w), h("strong", {}, String(counts[w])))),
      h("div", { class: "tile" }, h("span", { class: "muted" }, "Repositories"), h("strong", {}, String(repos.length))),
    );

    const repoTable = table(
      [
        { key: "ready", label: "Ready", value: readyWord, cell: (r) => healthBadge(readyWord(r)) },
        { key: "namespace", label: "Namespace" },
        { key: "name", label: "Name", cell: (r) => h("strong", {}, plain(r.name)) },
        { key: "kind", label: "Kind", value: (r) => r.kind || r.type },
        { key: "commit", label: "Commit", cell: (r) => commitCode(r.commit) },
        { key: "lastSync", label: "Last sync", cell: (r) => time(r.lastSync) },
        {
          key: "message",
          label: "Message",
          cls: "wrap",
          value: (r) => [r.reason, r.message].filter(Boolean).join(": "),
          cell: (r) => h("span", { class: readyWord(r) === "Failed" ? "error-text" : "" }, [r.reason, r.message].filter(Boolean).join(": ")),
        },
        { key: "url", label: "URL", cls: "wrap", cell: (r) => h("code", {}, plain(r.url)) },
        can("reconcile")
          ? { key: "_act", label: "", value: () => "", cell: (r) => reconcileButton("Repository", r.namespace, r.name) }
          : null,
      ].filter(Boolean),
      repos,
      { id: "repositories", title: "repositories", empty: "No Repository objects you may see." },
    );

    const pkgTable = table(
      [
        { key: "health", label: "Health", value: (p) => `${HEALTH_ORDER.indexOf(p.health)}${p.health}`, cell: (p) => healthBadge(p.health) },
        { key: "namespace", label: "Namespace" },
        {
          key: "name",
          label: "Name",
          cell: (p) => h("a", { href: kubepkgHref(p.namespace, p.name), class: "pkg-link" }, plain(p.name)),
        },
        { key: "version", label: "Version" },
        {
          key: "upgrade",
          label: "Upgrade",
          value: (p) => (p.upgrade ? plain(p.upgrade.version) : ""),
          cell: (p) => (p.upgrade ? h("span", { class: "upgrade" }, icon("up"), plain(p.upgrade.version)) : ""),
        },
        { key: "repository", label: "Repository" },
        { key: "message", label: "Message", cls: "wrap", value: (p) => [p.reason, p.message].filter(Boolean).join(": ") },
      ],
      pkgs,
      { id: "kubepkgs", title: "kubepkgs", sort: "health", empty: "No KubePkg objects you may see." },
    );

    const upTable = table(
      [
        { key: "namespace", label: "Namespace" },
        {
          key: "name",
          label: "KubePkg",
          cell: (u) => h("a", { href: kubepkgHref(u.namespace, u.name) }, plain(u.name)),
        },
        { key: "version", label: "Running" },
        { key: "available", label: "Available", cell: (u) => h("span", { class: "upgrade" }, icon("up"), plain(u.available)) },
        { key: "tag", label: "Catalog tag", cell: (u) => h("code", {}, plain(u.tag)) },
        { key: "repository", label: "Catalog" },
        can("promote")
          ? {
              key: "_act",
              label: "",
              value: () => "",
              cell: (u) => {
                if (!can("promote", u)) return "";
                const b = h("button", { type: "button", class: "small primary", "data-action": "promote" }, `Promote ${plain(u.available)}`);
                b.addEventListener("click", () =>
                  act(b, "/api/actions/promote", promotion(u), (answer) => banner(`Promotion branch ${plain(answer && answer.branch)} pushed${answer && answer.requestURL ? `: ${answer.requestURL}` : ""}`, "info")),
                );
                return b;
              },
            }
          : null,
      ].filter(Boolean),
      upgrades,
      { id: "upgrades", title: "upgrades", empty: "Every deployed package runs its catalog's latest revision." },
    );

    fill(main, 
      h("h1", {}, "Overview"),
      summary,
      section("KubePkgs", pkgTable),
      section("Repositories", repoTable),
      section("Upgrades available", upTable),
    );
  }

  /** A condition's status in words: Ready True is good, Stalled or Reconciling True is not. */
  function conditionBadge(c) {
    const status = plain(c.status) || "Unknown";
    if (status === "Unknown") return healthBadge("Unknown");
    const on = status === "True";
    const word = {
      Ready: on ? "Ready" : "Failed",
      Stalled: on ? "Stalled" : null,
      Reconciling: on ? "Progressing" : null,
    }[c.type];
    if (!word) return h("span", { class: "badge h-unknown", "data-health": status }, status);
    return healthBadge(word);
  }

  function conditionsTable(conditions) {
    return table(
      [
        { key: "type", label: "Type" },
        { key: "status", label: "Status", cell: conditionBadge },
        { key: "reason", label: "Reason" },
        { key: "message", label: "Message", cls: "wrap" },
        { key: "lastTransitionTime", label: "Since", cell: (c) => time(c.lastTransitionTime) },
      ],
      conditions,
      { id: "conditions", filter: false, empty: "No conditions yet." },
    );
  }

  function objectLabel(o) {
    return `${plain(o.kind)} ${o.namespace ? `${plain(o.namespace)}/` : ""}${plain(o.name)}`;
  }

  function inventoryTree(nodes, tracePanel) {
    const ul = h("ul", { class: "tree" });
    for (const node of nodes || []) {
      const traceButton = h("button", { type: "button", class: "small", "data-action": "trace" }, "Trace");
      traceButton.addEventListener("click", () => showTrace(node, tracePanel));
      ul.append(
        h(
          "li",
          {},
          h(
            "div",
            { class: "node" },
            healthBadge(node.health),
            h("span", { class: "obj" }, h("span", { class: "kind" }, plain(node.kind)), " ", h("span", { class: "name" }, `${node.namespace ? `${plain(node.namespace)}/` : ""}${plain(node.name)}`)),
            node.message ? h("span", { class: "muted wrap" }, plain(node.message)) : null,
            node.kind === "KubePkg" ? null : traceButton,
          ),
          node.children && node.children.length ? inventoryTree(node.children, tracePanel) : null,
        ),
      );
    }
    return ul;
  }

  function keyValues(obj) {
    const dl = h("dl", { class: "kv" });
    for (const [key, value] of Object.entries(obj || {})) {
      let shown;
      if (value !== null && typeof value === "object") shown = h("pre", {}, JSON.stringify(value, null, 2));
      else shown = plain(value);
      dl.append(h("dt", {}, key), h("dd", {}, shown));
    }
    return dl;
  }

  async function showTrace(node, panel) {
    const q = new URLSearchParams({
      apiVersion: node.apiVersion || "",
      kind: node.kind || "",
      namespace: node.namespace || "",
      name: node.name || "",
    });
    panel.replaceChildren(h("h2", {}, "Trace: ", objectLabel(node)), h("p", { class: "muted" }, "loading…"));
    panel.hidden = false;
    try {
      const trace = await api(`/api/trace?${q}`);
      panel.replaceChildren(h("h2", {}, "Trace: ", objectLabel(node)), keyValues(trace));
    } catch (e) {
      panel.replaceChildren(h("h2", {}, "Trace: ", objectLabel(node)), h("p", { class: "error-text" }, e.message));
    }
    panel.scrollIntoView({ block: "nearest" });
  }

  async function kubepkgPage(main, namespace, name) {
    const data = await api(`/api/kubepkgs/${seg(namespace)}/${seg(name)}`);
    const source = data.source || {};
    const tracePanel = h("section", { class: "card trace", id: "trace", hidden: true });
    const ready = (data.conditions || []).find((c) => c.type === "Ready");
    const health = data.health || (ready ? (ready.status === "True" ? "Ready" : ready.reason || "Degraded") : "Unknown");
    const facts = h(
      "dl",
      { class: "kv facts" },
      h("dt", {}, "Health"),
      h("dd", {}, healthBadge(health)),
      h("dt", {}, "Version"),
      h("dd", {}, plain(data.version)),
      data.appliedVersion && data.appliedVersion !== data.version
        ? [h("dt", {}, "Applied version"), h("dd", {}, plain(data.appliedVersion))]
        : null,
      data.message ? [h("dt", {}, "Message"), h("dd", {}, [data.reason, data.message].filter(Boolean).join(": "))] : null,
      h("dt", {}, "Repository"),
      h("dd", {}, plain(source.repository), source.url ? [" ", h("code", {}, plain(source.url))] : null),
      h("dt", {}, "Branch"),
      h("dd", {}, plain(source.branch)),
      h("dt", {}, "Path"),
      h("dd", {}, h("code", {}, plain(source.path))),
      h("dt", {}, "Commit"),
      h("dd", {}, h("code", {}, plain(source.commit))),
      data.catalog && data.catalog.tag
        ? [h("dt", {}, "Catalog"), h("dd", {}, h("code", {}, plain(data.catalog.tag)), " ", h("code", {}, short(data.catalog.commit)), " ", plain(data.catalog.url))]
        : null,
      data.upgrade ? [h("dt", {}, "Upgrade"), h("dd", {}, h("span", { class: "upgrade" }, icon("up"), plain(data.upgrade.version)))] : null,
      data.images && Object.keys(data.images).length
        ? [h("dt", {}, "Images"), h("dd", {}, h("ul", { class: "digests" }, Object.entries(data.images).map(([c, ref]) => h("li", {}, `${c}: `, h("code", {}, plain(ref))))))]
        : null,
    );
    const history = table(
      [
        { key: "id", label: "Revision", value: (r) => (typeof r.id === "number" ? r.id : plain(r.id)) },
        { key: "version", label: "Version" },
        { key: "commit", label: "Commit", cell: (r) => commitCode(r.commit) },
        { key: "result", label: "Result", cell: (r) => (r.result ? healthBadge(/fail|error/i.test(r.result) ? "Failed" : /ok|success|applied|ready/i.test(r.result) ? "Ready" : r.result) : "") },
        { key: "applied", label: "When", value: (r) => r.applied || r.time, cell: (r) => time(r.applied || r.time) },
      ],
      data.history || [],
      { id: "history", sort: "id", desc: true, filter: false, empty: "Nothing applied yet." },
    );
    const events = table(
      [
        { key: "type", label: "Type", cell: (e) => (e.type === "Warning" ? h("span", { class: "badge h-bad" }, icon("warn"), "Warning") : plain(e.type)) },
        { key: "reason", label: "Reason" },
        {
          key: "object",
          label: "Object",
          value: (e) => (e.object && typeof e.object === "object" ? objectLabel(e.object) : plain(e.object)),
          cell: (e) => (e.object && typeof e.object === "object" ? objectLabel(e.object) : plain(e.object)),
        },
        { key: "message", label: "Message", cls: "wrap" },
        { key: "count", label: "Count" },
        { key: "lastSeen", label: "Last seen", cell: (e) => time(e.lastSeen) },
      ],
      data.events || [],
      { id: "events", sort: "lastSeen", desc: true, empty: "No events." },
    );
    let inventory = data.inventory;
    if (inventory && !Array.isArray(inventory)) inventory = inventory.children ? [inventory] : [];
    fill(main, 
      h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Overview"), " / KubePkg ", plain(namespace), " / "),
      h("div", { class: "title-row" }, h("h1", {}, plain(name)), reconcileButton("KubePkg", namespace, name)),
      h("section", { class: "card" }, facts),
      section("Conditions", conditionsTable(data.conditions || [])),
      section("Inventory", inventory && inventory.length ? inventoryTree(inventory, tracePanel) : h("p", { class: "muted" }, "No objects applied yet.")),
      tracePanel,
      section("History", history),
      section("Events", events),
    );
  }

  function approveButton(r) {
    if (!can("approve", r) || r.lifecycle !== "Proposed") return "";
    // A Proposed revision belongs to the deployment Repository its promotion branch is in.
    const target = r.repository;
    const branch = r.branch || `promote/${r.package}/${r.version}`;
    const b = h("button", { type: "button", class: "small primary", "data-action": "approve" }, "Approve");
    b.addEventListener("click", () =>
      act(b, "/api/actions/approve", { namespace: r.namespace, name: localName(target), branch }, (answer) =>
        banner(`${branch} merged into ${plain(answer && answer.target)} as ${short(answer && answer.merged)}`, "info"),
      ),
    );
    return b;
  }

  async function catalogPage(main) {
    const data = await api("/api/catalog");
    const packages = data.packages || [];
    const rows = [];
    for (const p of packages) {
      for (const r of p.revisions || []) {
        rows.push(Object.assign({ package: p.name, repository: p.repository }, r));
      }
    }
    const warnings = data.warnings || [];
    const pkgTable = table(
      [
        { key: "name", label: "Package", cell: (p) => h("strong", {}, plain(p.name)) },
        { key: "latest", label: "Latest" },
        { key: "count", label: "Revisions", value: (p) => (p.revisions || []).length },
        { key: "repository", label: "Catalog" },
      ],
      packages,
      { id: "packages", title: "packages", empty: "No catalog revisions you may see." },
    );
    const revColumns = [
      { key: "package", label: "Package" },
      {
        key: "version",
        label: "Version",
        cell: (r) => h("span", {}, plain(r.version), r.latest === true ? h("span", { class: "tag" }, "latest") : null),
      },
      { key: "tag", label: "Tag", cell: (r) => h("code", {}, plain(r.tag)) },
      { key: "commit", label: "Commit", cell: (r) => commitCode(r.commit) },
      { key: "lifecycle", label: "Lifecycle" },
      {
        key: "ready",
        label: "Ready",
        value: (r) => readyWord(r),
        cell: (r) =>
          r.movedTag
            ? h("span", { class: "badge h-stalled" }, icon("warn"), "Tag moved")
            : healthBadge(readyWord(r)),
      },
      { key: "created", label: "Created", cell: (r) => time(r.created) },
      { key: "repository", label: "Catalog" },
    ];
    if (can("approve")) revColumns.push({ key: "_act", label: "", value: () => "", cell: approveButton });
    const revTable = table(revColumns, rows, {
      id: "revisions",
      title: "revisions",
      sort: "package",
      empty: "No revisions.",
      rowClass: (r) => (r.movedTag ? "moved" : undefined),
    });
    fill(main, 
      h("h1", {}, "Catalog"),
      warnings.length
        ? h(
            "section",
            { class: "card warn-card", id: "moved-tags" },
            h("h2", {}, icon("warn"), "Moved tags"),
            h(
              "p",
              { class: "muted" },
              "A published tag must never move; these point somewhere else than when they were first seen.",
            ),
            h(
              "ul",
              {},
              warnings.map((w) =>
                h("li", {}, plain(w.repository), " ", w.tag ? h("code", {}, plain(w.tag)) : null, ": ", plain(w.message)),
              ),
            ),
          )
        : null,
      section("Packages", pkgTable),
      section("Revisions", revTable),
    );
  }

  async function airgapPage(main) {
    const data = await api("/api/airgap");
    const imports = data.imports || [];
    const images = data.images || [];
    fill(main, 
      h("h1", {}, "Airgap imports"),
      data.store === false ? h("p", { class: "muted" }, "This controller serves no registry store (--serve-registry), so no import is recorded here.") : null,
      section(
        "Imports",
        table(
          [
            { key: "imported", label: "Imported", cell: (i) => time(i.imported) },
            {
              key: "images",
              label: "What",
              cls: "wrap",
              value: (i) => [...Object.keys(i.images || {}), ...(i.repositories || [])].join(" "),
              cell: (i) =>
                h(
                  "ul",
                  { class: "digests" },
                  Object.entries(i.images || {}).map(([ref, digest]) =>
                    h("li", {}, plain(ref), " ", h("code", { title: plain(digest) }, short(String(digest).replace(/^sha256:/, "")))),
                  ),
                  (i.repositories || []).map((url) => h("li", {}, "git ", h("code", {}, plain(url)))),
                ),
            },
            { key: "created", label: "Export created", cell: (i) => time(i.created) },
            { key: "sha256", label: "Export sha256", cls: "wrap", cell: (i) => h("code", {}, plain(i.sha256)) },
            { key: "signer", label: "Signer", value: (i) => i.signer || "unsigned" },
            { key: "record", label: "Recorded in" },
          ],
          imports,
          { id: "imports", title: "imports", sort: "imported", desc: true, empty: "Nothing imported." },
        ),
      ),
      section(
        "Imported images",
        table(
          [
            { key: "repository", label: "Repository", cell: (i) => h("strong", {}, plain(i.repository)) },
            { key: "tag", label: "Tag" },
            { key: "digest", label: "Digest", cls: "wrap", cell: (i) => h("code", {}, plain(i.digest)) },
          ],
          images,
          { id: "airgap-images", title: "images", empty: "No imported images." },
        ),
      ),
    );
  }

  async function registryPage(main) {
    const data = await api("/api/registry");
    const rows = [];
    for (const repo of data.repositories || []) {
      const tags = repo.tags || [];
      if (!tags.length) rows.push({ repository: repo.name });
      for (const t of tags) rows.push(Object.assign({ repository: repo.name }, t));
    }
    fill(main, 
      h("h1", {}, "Registry"),
      data.store === false ? h("p", { class: "muted" }, "This controller serves no registry (--serve-registry).") : null,
      section(
        "Repositories and tags",
        table(
          [
            { key: "repository", label: "Repository", cell: (r) => h("strong", {}, plain(r.repository)) },
            { key: "tag", label: "Tag" },
            { key: "digest", label: "Digest", cls: "wrap", cell: (r) => h("code", {}, plain(r.digest)) },
            { key: "size", label: "Size", value: (r) => Number(r.size) || 0, cell: (r) => bytes(r.size) },
          ],
          rows,
          { id: "registry", title: "registry", empty: "The registry holds no images." },
        ),
      ),
    );
  }

  // ---------------------------------------------------------------- routing

  // Which stream topics each page shows (API.md): a change to any of them refetches the page.
  const PAGES = {
    overview: { render: overviewPage, topics: ["repositories", "kubepkgs", "revisions"] },
    kubepkg: { render: kubepkgPage, topics: ["kubepkgs", "events", "revisions"] },
    catalog: { render: catalogPage, topics: ["revisions", "repositories"] },
    airgap: { render: airgapPage, topics: ["airgap", "registry"] },
    registry: { render: registryPage, topics: ["registry", "airgap"] },
  };

  function parseRoute() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "kubepkg" && parts.length === 3) return { page: "kubepkg", args: [parts[1], parts[2]] };
    if (PAGES[parts[0]]) return { page: parts[0], args: [] };
    return { page: "overview", args: [] };
  }

  let rendering = null;
  let again = false;

  async function render(scrollTop) {
    if (rendering) {
      again = true;
      return rendering;
    }
    const main = document.getElementById("main");
    const route = parseRoute();
    const samePage = state.route && state.route.page === route.page && state.route.args.join("/") === route.args.join("/");
    if (!samePage) state.tables = {};
    state.route = route;
    for (const a of document.querySelectorAll("#nav a")) {
      a.setAttribute("aria-current", a.dataset.page === route.page ? "page" : "false");
    }
    const y = window.scrollY;
    rendering = (async () => {
      try {
        if (!samePage) fill(main, h("p", { class: "muted" }, "loading…"));
        await loadPermissions();
        await PAGES[route.page].render(main, ...route.args);
        main.dataset.page = route.page;
        main.dataset.rendered = String(Date.now());
        if (samePage) window.scrollTo(0, y);
        else if (scrollTop) window.scrollTo(0, 0);
      } catch (e) {
        if (e.status === 401) {
          state.session = { authenticated: false };
          loginPage(main, "Your session has ended; sign in again.");
        } else if (e.status === 403) {
          fill(main, h("h1", {}, "Not allowed"), h("p", { class: "error-text" }, e.message));
        } else if (e.status === 404) {
          fill(main, h("h1", {}, "Not found"), h("p", { class: "error-text" }, e.message));
        } else {
          fill(main, h("h1", {}, "Error"), h("p", { class: "error-text" }, e.message || String(e)));
        }
        main.dataset.page = "error";
      }
    })();
    try {
      await rendering;
    } finally {
      rendering = null;
    }
    if (again) {
      again = false;
      await render(false);
    }
  }

  // ---------------------------------------------------------------- live updates

  function setLive(word) {
    const el = document.getElementById("live");
    el.textContent = word;
    el.dataset.state = word;
  }

  let retry = 0;
  let retryTimer = null;
  let pending = null;

  function stopStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
    clearTimeout(retryTimer);
  }

  function changed(topics) {
    const page = PAGES[state.route ? state.route.page : "overview"];
    const list = Array.isArray(topics) ? topics.map((t) => String(t).toLowerCase()) : [];
    // A topic the page does not know is refetched too: better one request too many than a stale page.
    const known = Object.values(PAGES).some((p) => list.some((t) => p.topics.includes(t)));
    if (list.length && known && !list.some((t) => page.topics.includes(t))) return;
    // Coalesce a burst of changes into one refetch.
    clearTimeout(pending);
    pending = setTimeout(() => render(false), 150);
  }

  function startStream() {
    stopStream();
    const source = new EventSource("/api/stream", { withCredentials: true });
    state.stream = source;
    let reconnected = retry > 0;
    source.addEventListener("open", () => {
      retry = 0;
      setLive("live");
    });
    // The first message on every connection; after a reconnect we may have missed changes.
    source.addEventListener("hello", () => {
      if (reconnected) changed([]);
      reconnected = false;
    });
    source.addEventListener("change", (event) => {
      let topics = [];
      try {
        topics = JSON.parse(event.data).topics || [];
      } catch (_) {
        topics = [];
      }
      changed(topics);
    });
    source.addEventListener("error", () => {
      // EventSource retries by itself with a fixed delay; we close it and back off instead,
      // and check the session (a 401 on the stream shows as an error without a status).
      source.close();
      if (state.stream !== source) return;
      state.stream = null;
      setLive("reconnecting");
      const delay = Math.min(30000, 1000 * 2 ** retry) * (0.75 + Math.random() * 0.5);
      retry += 1;
      retryTimer = setTimeout(async () => {
        try {
          const session = await loadSession();
          if (!session.authenticated) {
            loginPage(document.getElementById("main"), "Your session has ended; sign in again.");
            return;
          }
        } catch (_) {
          // the server is away: keep backing off
        }
        startStream();
      }, delay);
    });
  }

  // ---------------------------------------------------------------- start

  async function start() {
    banner("");
    let session;
    try {
      session = await loadSession();
    } catch (e) {
      banner(`cannot reach the dashboard API: ${e.message}`);
      return;
    }
    if (!session.authenticated) {
      loginPage(document.getElementById("main"));
      return;
    }
    startStream();
    await render(true);
  }

  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await api("/api/logout", { body: {} });
    } catch (_) {
      // logged out either way: the cookie is gone or was already
    }
    stopStream();
    state.session = { authenticated: false };
    document.getElementById("user").textContent = "";
    document.getElementById("logout").hidden = true;
    loginPage(document.getElementById("main"));
  });

  window.addEventListener("hashchange", () => {
    if (state.session && state.session.authenticated) render(true);
  });

  state.tables = {};
  start();
})();
