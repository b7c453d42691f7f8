// The command center's own script: keeps the server-rendered pages live from the daemon's
// server-sent events and sends the page's actions to the JSON API. No framework, no build.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf() },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function liveIndicator(source) {
  const live = document.getElementById("live");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "live"; });
}

function seconds(card) {
  if (!card.started_at) return "not started";
  const end = card.finished_at ? Date.parse(card.finished_at) : Date.now();
  return `${Math.max(0, Math.round((end - Date.parse(card.started_at)) / 1000))}s`;
}

// -- the board ---------------------------------------------------------------------------
function cardNode(card) {
  const a = el("a", `card status-${card.status}`);
  a.id = `run-${card.id}`;
  a.href = `/runs/${card.id}`;
  a.dataset.run = card.id;
  a.dataset.status = card.status;
  const head = el("div", "card-head");
  head.append(el("span", "run-id", `#${card.id}`), " ", el("b", null, card.automation), " ",
    el("span", "status", card.status));
  let meta = card.trigger;
  if (card.repository) meta += ` · ${card.repository}`;
  if (card.attempt > 1) meta += ` · attempt ${card.attempt}`;
  if (card.cost_usd > 0) meta += ` · $${card.cost_usd.toFixed(2)}`;
  const elapsed = el("div", "meta elapsed", seconds(card));
  elapsed.dataset.started = card.started_at || "";
  elapsed.dataset.finished = card.finished_at || "";
  a.append(head, el("div", "meta", meta), elapsed, el("div", "last", card.last_step || card.summary || ""));
  return a;
}

function recount() {
  for (const column of document.querySelectorAll(".column")) {
    column.querySelector(".count").textContent = column.querySelectorAll(".card").length;
  }
}

async function refreshCard(id) {
  const response = await fetch(`/api/runs/${id}`, { credentials: "same-origin" });
  if (!response.ok) return;
  const { run } = await response.json();
  document.getElementById(`run-${id}`)?.remove();
  const cards = document.querySelector(`#col-${run.column} .cards`);
  const node = cardNode(run);
  const newestFirst = run.column === "failed" || run.column === "done";
  if (newestFirst) cards.prepend(node); else cards.append(node);
  recount();
}

function board() {
  const source = new EventSource("/api/stream");
  liveIndicator(source);
  source.addEventListener("run", (message) => {
    const line = JSON.parse(message.data);
    const card = document.getElementById(`run-${line.run_id}`);
    if (!card || line.status || line.type === "started" || line.type === "finished") {
      refreshCard(line.run_id);
    } else if (["step", "command", "message", "approval_request", "steer_received"].includes(line.type)) {
      card.querySelector(".last").textContent = line.line;
    }
  });
  source.addEventListener("new", (message) => {
    for (const id of JSON.parse(message.data).run_ids) refreshCard(id);
  });
  const next = () => {
    const first = document.querySelector("#col-needs-you .card");
    if (first) window.location.href = first.getAttribute("href");
  };
  document.getElementById("next-needs-you").addEventListener("click", next);
  document.addEventListener("keydown", (event) => {
    if (event.key === "n" && !event.target.closest("input, textarea")) next();
  });
  setInterval(() => {
    for (const node of document.querySelectorAll(".card .elapsed")) {
      const { started, finished } = node.dataset;
      if (started && !finished) node.textContent = seconds({ started_at: started });
    }
  }, 1000);
}

// -- a run's page ------------------------------------------------------------------------
function logEntry(env) {
  const event = env.event;
  const li = el("li", `event type-${event.type}`);
  li.dataset.seq = env.seq;
  const at = new Date(env.at).toLocaleTimeString();
  li.append(el("time", null, at), " ");
  switch (event.type) {
    case "command": {
      li.append(el("code", null, `$ ${event.command}`), " ", el("span", event.exit_code === 0 ? "ok" : "bad", `→ ${event.exit_code}`));
      if (event.output_tail) li.append(el("pre", null, event.output_tail));
      break;
    }
    case "artifact": {
      li.append(el("b", null, `${event.kind}: `), event.title || event.url || "");
      if (event.content) li.append(el("pre", "artifact", event.content));
      break;
    }
    case "approval_request":
      li.append(el("b", null, `asks to ${event.action}: `), event.description);
      break;
    case "approval_decision":
      li.append(el("b", null, `${event.approved ? "approved" : "denied"} by ${event.by}`), event.reason ? `: ${event.reason}` : "");
      break;
    case "steer_received":
      li.append(el("b", null, `steering from ${event.by} taken: `), event.text);
      break;
    case "status":
      li.append(el("i", null, `now ${event.status}`));
      break;
    case "started":
      li.append(el("i", null, `started (${event.trigger}, attempt ${event.attempt})`));
      break;
    case "finished":
      li.append(el("b", null, `${event.status}: `), event.summary);
      break;
    default:
      li.append(event.title || event.text || event.path || event.type);
  }
  return li;
}

function approvalNode(runId, event) {
  const box = el("div", "approval");
  box.dataset.approval = event.id;
  const what = el("div");
  what.append(el("b", null, `asks to ${event.action}`), `: ${event.description}`);
  const reason = el("input", "reason");
  reason.placeholder = "reason (optional)";
  box.append(what, reason, el("button", "approve", "Approve"), el("button", "deny", "Deny"), el("span", "outcome"));
  box.querySelector(".approve").dataset.decide = "approve";
  box.querySelector(".deny").dataset.decide = "deny";
  return box;
}

// -- a run's diff and its review ---------------------------------------------------------
function diffView(runId) {
  const box = document.getElementById("diff");
  const source = document.getElementById("diff-source");
  const send = document.getElementById("send-review");
  const state = document.getElementById("review-state");
  const pending = []; // {path, line, text}
  let timer = null;

  const refreshSend = () => {
    send.disabled = pending.length === 0;
    send.textContent = pending.length ? `Send review (${pending.length})` : "Send review";
  };

  function commentNode(comment) {
    const node = el("div", `comment${comment.outdated ? " outdated" : ""}`);
    node.append(el("b", null, comment.by ? `${comment.by}: ` : "pending: "), comment.text);
    if (comment.outdated) node.append(" ", el("span", "status", "outdated"));
    return node;
  }

  async function render() {
    const response = await fetch(`/api/runs/${runId}/diff?html=1`, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    source.textContent = { live: "(as it stands now)", final: "(the run's final diff)", none: "(no changes)" }[data.source];
    box.replaceChildren();
    const kept = new Map();
    const outdated = [];
    for (const c of data.comments) {
      if (c.outdated) { outdated.push(c); continue; }
      const key = `${c.path}:${c.line}`;
      kept.set(key, [...(kept.get(key) || []), c]);
    }
    for (const file of data.files) {
      const section = el("section", "file");
      section.dataset.path = file.path;
      section.append(el("h3", null, file.path));
      const table = el("table", "hl");
      for (const hunk of file.hunks) {
        const head = el("tr", "hunk");
        const cell = el("td", null, hunk.header);
        cell.colSpan = 3;
        head.append(cell);
        table.append(head);
        for (const line of hunk.lines) {
          const row = el("tr", `line kind-${line.kind === "+" ? "add" : line.kind === "-" ? "del" : "ctx"}`);
          const number = el("td", "num", line.new ?? "");
          if (line.new !== null) {
            number.classList.add("commentable");
            number.dataset.line = line.new;
            row.dataset.line = line.new;
          }
          const code = el("td", "code");
          code.innerHTML = line.html; // Pygments' output: escaped text in spans
          row.append(el("td", "num", line.old ?? ""), number, code);
          table.append(row);
          for (const c of kept.get(`${file.path}:${line.new}`) || []) {
            const note = el("tr", "note");
            const td = el("td");
            td.colSpan = 3;
            td.append(commentNode(c));
            note.append(td);
            table.append(note);
          }
        }
      }
      section.append(table);
      box.append(section);
    }
    if (outdated.length) {
      const list = el("section", "outdated-comments");
      list.append(el("h3", null, "Outdated comments (their lines changed since)"));
      for (const c of outdated) {
        const item = commentNode(c);
        item.prepend(el("code", null, `${c.path}:${c.line} `));
        list.append(item);
      }
      box.append(list);
    }
  }

  box.addEventListener("click", (event) => {
    const cell = event.target.closest("td.commentable");
    if (!cell) return;
    const row = cell.closest("tr");
    if (row.nextElementSibling?.classList.contains("draft")) return;
    const path = cell.closest("section.file").dataset.path;
    const line = Number(cell.dataset.line);
    const draft = el("tr", "draft");
    const td = el("td");
    td.colSpan = 3;
    const text = el("textarea");
    text.placeholder = `comment on ${path}:${line}`;
    const add = el("button", "add-comment", "Add to review");
    add.addEventListener("click", () => {
      if (!text.value.trim()) return;
      pending.push({ path, line, text: text.value.trim() });
      td.replaceChildren(commentNode({ text: text.value.trim() }));
      draft.className = "note pending";
      refreshSend();
    });
    td.append(text, add);
    draft.append(td);
    row.after(draft);
    text.focus();
  });

  send.addEventListener("click", async () => {
    try {
      const done = await post(`/api/runs/${runId}/review`, { comments: pending });
      pending.length = 0;
      refreshSend();
      state.textContent = `review sent as one message (${done.comments} comments)`;
      state.className = "sent";
      await render();
    } catch (error) {
      state.textContent = error.message;
      state.className = "error";
    }
  });

  return {
    render,
    soon() { // a change to the workspace: render again once things settle
      clearTimeout(timer);
      timer = setTimeout(render, 800);
    },
  };
}

function runPage() {
  const runId = document.querySelector(".run").dataset.run;
  const log = document.getElementById("log");
  const approvals = document.getElementById("approvals");
  const steerState = document.getElementById("steer-state");
  let lastSeq = 0;
  let sentSteer = null;
  const taken = new Map(); // steering text -> when the agent took it (may come before the POST's answer)
  const showTaken = (at) => {
    steerState.textContent = `taken by the agent at ${new Date(at).toLocaleTimeString()}`;
    steerState.className = "taken";
    sentSteer = null;
  };
  const diff = diffView(runId);
  diff.render();
  const source = new EventSource(`/api/runs/${runId}/stream`);
  liveIndicator(source);
  source.addEventListener("run-event", (message) => {
    const env = JSON.parse(message.data);
    if (env.seq <= lastSeq) return; // never twice, whatever a reconnect replays
    lastSeq = env.seq;
    log.append(logEntry(env));
    const event = env.event;
    if (event.type === "status" || event.type === "finished") {
      document.getElementById("run-status").textContent = event.status;
    }
    if (event.type === "approval_request" && !approvals.querySelector(`[data-approval="${CSS.escape(event.id)}"]`)) {
      approvals.append(approvalNode(runId, event));
    }
    if (event.type === "approval_decision") {
      const box = approvals.querySelector(`[data-approval="${CSS.escape(event.id)}"]`);
      if (box) {
        box.classList.add("decided");
        box.querySelector(".outcome").textContent = `${event.approved ? "approved" : "denied"} by ${event.by}`;
        for (const button of box.querySelectorAll("button")) button.disabled = true;
      }
    }
    if (["artifact", "file_change", "command"].includes(event.type)) diff.soon();
    if (event.type === "steer_received") {
      taken.set(event.text, env.at);
      if (event.text === sentSteer) showTaken(env.at);
    }
  });
  source.addEventListener("end", () => {
    source.close();
    document.getElementById("live").textContent = "ended";
  });
  document.getElementById("steer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("steer-text");
    const text = input.value.trim();
    if (!text) return;
    try {
      taken.delete(text);
      sentSteer = text;
      steerState.textContent = "sending…";
      await post(`/api/runs/${runId}/steer`, { text });
      input.value = "";
      if (taken.has(text)) {
        showTaken(taken.get(text));
      } else if (sentSteer === text) {
        steerState.textContent = "sent — waiting for the agent to take it";
        steerState.className = "sent";
      }
    } catch (error) {
      sentSteer = null;
      steerState.textContent = error.message;
      steerState.className = "error";
    }
  });
  approvals.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-decide]");
    if (!button) return;
    const box = button.closest(".approval");
    const reason = box.querySelector(".reason").value.trim() || null;
    const outcome = box.querySelector(".outcome");
    try {
      await post(`/api/runs/${runId}/${button.dataset.decide}`, { approval_id: box.dataset.approval, reason });
      if (!box.classList.contains("decided")) outcome.textContent = "sent";
    } catch (error) {
      outcome.textContent = error.message;
      outcome.className = "outcome error";
    }
  });
  document.querySelector(".buttons").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const state = document.getElementById("action-state");
    try {
      const done = await post(`/api/runs/${runId}/${button.dataset.action}`, {});
      if (button.dataset.action === "retry" && done.run_id) {
        window.location.href = `/runs/${done.run_id}`;
        return;
      }
      state.textContent = `${button.dataset.action}: sent`;
      state.className = "";
    } catch (error) {
      state.textContent = error.message;
      state.className = "error";
    }
  });
}

// -- automations -------------------------------------------------------------------------
function automationsPage() {
  const table = document.querySelector(".automations");
  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-pause]");
    if (!button) return;
    const row = button.closest("tr");
    const outcome = row.querySelector(".pause-outcome");
    try {
      await post(`/api/automations/${encodeURIComponent(row.dataset.automation)}/${button.dataset.pause}`, {});
      window.location.reload();
    } catch (error) {
      outcome.textContent = error.message;
      outcome.className = "outcome pause-outcome error";
    }
  });
  table.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const row = form.closest("tr");
    const inputs = {};
    for (const field of form.querySelectorAll("input[name]")) {
      if (field.value !== "") inputs[field.name] = field.value;
    }
    const outcome = form.querySelector(".outcome");
    try {
      const made = await post(`/api/automations/${encodeURIComponent(row.dataset.automation)}/run`, { inputs });
      window.location.href = `/runs/${made.run_id}`;
    } catch (error) {
      outcome.textContent = error.message;
      outcome.className = "outcome error";
    }
  });
}

// -- events ------------------------------------------------------------------------------
function eventsPage() {
  for (const details of document.querySelectorAll("details.payload")) {
    details.addEventListener("toggle", async () => {
      const pre = details.querySelector("pre");
      if (!details.open || pre.textContent) return;
      const id = details.closest("tr").dataset.event;
      const response = await fetch(`/api/events/${id}`, { credentials: "same-origin" });
      const event = await response.json();
      pre.textContent = JSON.stringify(event.payload, null, 2);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "board") board();
  if (page === "run") runPage();
  if (page === "automations") automationsPage();
  if (page === "events") eventsPage();
});
