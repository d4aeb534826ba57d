// lablease dashboard: progressive enhancement of server-rendered pages. Without this file every
// page still reads, filters (form submit), sorts (links) and unlocks (form + confirmation page).
// With it: live parts refresh in place (no page reload), each provisioning node's stage changes as
// the lab service pushes it (server-sent events), filters and sorting apply without a reload, and
// the unlock asks for confirmation in a dialog.
"use strict";
(() => {
  const BUSY_MS = 1500, IDLE_MS = 15000, SOON_MS = 400;
  let timer = null, soonTimer = null, running = false;

  const regions = () => [...document.querySelectorAll("[data-live][id]")];

  // Mirrors Stage.label() in stages.py.
  const stageLabel = (ev) => {
    const plain = ["start", "done", "made"].includes(ev.status);
    return (plain ? ev.stage : `${ev.stage} ${ev.status}`) + (ev.attempt > 1 ? ` (attempt ${ev.attempt})` : "");
  };

  const typing = (region) => {
    const el = document.activeElement;
    return el && region.contains(el) && ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName);
  };

  const focusKey = (region) => {
    const el = document.activeElement;
    if (!el || !region.contains(el)) return null;
    if (el.dataset.sort) return `[data-sort="${el.dataset.sort}"]`;
    return el.id ? `#${CSS.escape(el.id)}` : null;
  };

  // Replace a live region with its fresh copy; rows whose state changed flash, and are announced
  // to screen readers (politely, in one sentence) through the page's #live-note.
  function swap(oldRegion, newRegion) {
    const before = new Map([...oldRegion.querySelectorAll("tr[data-node]")].map((r) => [r.dataset.node, r.dataset.state]));
    const changed = [];
    for (const row of newRegion.querySelectorAll("tr[data-node]")) {
      const was = before.get(row.dataset.node);
      if (was !== undefined && was !== row.dataset.state) {
        row.dataset.changed = "";
        changed.push(`${row.dataset.node} ${row.dataset.state}`);
      }
    }
    const key = focusKey(oldRegion);
    oldRegion.replaceWith(newRegion);
    if (key) newRegion.querySelector(key)?.focus();
    const note = document.getElementById("live-note");
    if (note && changed.length) note.textContent = `Now ${changed.join(", ")}.`;
  }

  async function refresh() {
    clearTimeout(timer);
    if (running) return schedule();
    running = true;
    try {
      const live = regions().filter((r) => !typing(r));
      if (live.length && !document.hidden) {
        const resp = await fetch(location.href, { cache: "no-store", headers: { "X-Requested-With": "dashboard" } });
        if (resp.ok) {
          const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
          for (const region of live) {
            const fresh = doc.getElementById(region.id);
            if (fresh) swap(region, document.adoptNode(fresh));
          }
        }
      }
    } catch (err) {
      // The server restarted or the network dropped: keep the page as it is and try again later.
    } finally {
      running = false;
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    const busy = regions().some((r) => r.hasAttribute("data-busy"));
    timer = setTimeout(refresh, busy ? BUSY_MS : IDLE_MS);
  }

  function soon() {
    if (soonTimer) return;
    soonTimer = setTimeout(() => { soonTimer = null; refresh(); }, SOON_MS);
  }

  function listen(url) {
    if (!window.EventSource) return;
    const source = new EventSource(url);
    source.addEventListener("progress", (msg) => {
      const ev = JSON.parse(msg.data);
      const name = CSS.escape(ev.node);
      const row = document.querySelector(`tr[data-node="${name}"]`);
      const page = document.querySelector(`[data-node-page="${name}"]`);
      const cell = (row ?? page)?.querySelector('[data-col="stage"]');
      if (cell) cell.textContent = stageLabel(ev);
      if (row || page || document.getElementById("nodes-region")) soon();
    });
  }

  function navigate(url) {
    history.pushState(null, "", url);
    refresh();
  }

  function enhanceFilters(form) {
    const apply = () => {
      const params = new URLSearchParams(location.search);
      for (const [key, value] of new FormData(form)) {
        if (key === "sort" || key === "dir") continue; // the current sort lives in the address
        if (value) params.set(key, value); else params.delete(key);
      }
      const query = params.toString();
      navigate(`${location.pathname}${query ? `?${query}` : ""}`);
    };
    let typingTimer = null;
    form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
    form.addEventListener("change", apply);
    form.addEventListener("input", (e) => {
      if (e.target.type !== "search") return;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(apply, 300);
    });
  }

  function syncFilters() {
    const form = document.querySelector("form.filters");
    if (!form) return;
    const params = new URLSearchParams(location.search);
    for (const name of ["type", "state", "owner"]) {
      if (form.elements[name]) form.elements[name].value = params.get(name) ?? "";
    }
  }

  // Confirm in a dialog, then send the form's fields as JSON (the lock API's body format). The
  // answer is a page: after an unlock, the node's page it redirected to; after a refusal, the
  // node's page with the server's message, shown in place.
  function enhanceUnlock(form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!window.confirm(form.dataset.confirm)) return;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      try {
        const fields = { ...Object.fromEntries(new FormData(form)), confirm: "yes" };
        const resp = await fetch(form.action, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(fields) });
        if (resp.redirected) { location.assign(resp.url); return; }
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const main = doc.getElementById("main");
        if (!main) throw new Error(`the server answered ${resp.status}`);
        document.getElementById("main").replaceWith(document.adoptNode(main));
        document.querySelectorAll("form[data-confirm]").forEach(enhanceUnlock);
        (document.getElementById("message") ?? document.getElementById("main")).focus();
      } catch (err) {
        button.disabled = false;
        button.removeAttribute("aria-busy");
        window.alert(`The unlock could not be sent: ${err.message}`);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const filters = document.querySelector("form.filters:not(.usage-period)");
    if (filters) enhanceFilters(filters);
    document.querySelectorAll("form[data-confirm]").forEach(enhanceUnlock);
    document.addEventListener("click", (e) => {
      const link = e.target.closest("a[data-sort]");
      if (!link || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      navigate(link.href);
    });
    window.addEventListener("popstate", () => { syncFilters(); refresh(); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    const progress = document.body.dataset.progress;
    if (progress && regions().length) listen(progress);
    if (regions().length) schedule();
  });
})();
