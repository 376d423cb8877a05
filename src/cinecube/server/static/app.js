// The cinecube page: one small script, no build step. It talks to the /v1 API with the key
// kept in this browser (localStorage), follows a job's progress through its event stream
// (read with fetch, so the key travels in a header, never in a URL), and fetches results as
// blobs for the same reason.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: localStorage.getItem("cinecube-key") || "", model: null, current: null, cursor: null, blobs: new Map() };
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
  return fetch(path, { ...options, headers });
}

async function json(path, options) {
  const response = await api(path, options);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((body && body.message) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function say(text, ok = false) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.classList.toggle("ok", ok);
}

// ---------------------------------------------------------------- key

async function checkKey() {
  const label = $("key-state");
  try {
    const me = await json("/v1/me");
    label.textContent = me.keys_required ? `key: ${me.name}` : "open server (no key needed)";
    $("key-forget").hidden = !state.key;
    return true;
  } catch (error) {
    label.textContent = error.status === 401 ? "enter your API key" : `server: ${error.message}`;
    return false;
  }
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = $("key").value.trim();
  localStorage.setItem("cinecube-key", state.key);
  $("key").value = "";
  if (await start()) say("");
});

$("key-forget").addEventListener("click", () => {
  state.key = "";
  localStorage.removeItem("cinecube-key");
  $("gallery").replaceChildren();
  checkKey();
});

// ---------------------------------------------------------------- sizes

function snap(value, grid, low, high) {
  const lowest = Math.ceil(low / grid) * grid;
  return Math.min(Math.floor(high / grid) * grid, Math.max(lowest, Math.round(value / grid) * grid));
}

function chosenSize() {
  const m = state.model;
  const aspect = parseFloat($("aspect").value);
  const base = parseInt($("size").value, 10);
  const height = snap(base / Math.sqrt(aspect), m.grid.height, m.min_side, m.max_side);
  const width = snap(base * Math.sqrt(aspect), m.grid.width, m.min_side, m.max_side);
  return { height, width };
}

function fillControls() {
  const m = state.model;
  const sizes = [32, 48, 64, 96, 128, 192, 256].filter((s) => s >= m.min_side && s <= m.max_side);
  $("size").replaceChildren(...sizes.map((s) => new Option(`${s} px`, s, s === 64, s === 64)));
  const fps = m.defaults.fps;
  const frames = [1, 8, 16, 24, 32, 48, 64].filter((f) => f <= m.max_frames);
  $("frames").replaceChildren(
    ...frames.map((f) => new Option(f === 1 ? "still image" : `${(f / fps).toFixed(1)} s · ${f} frames`, f, f === 16, f === 16)),
  );
  $("steps").max = m.limits.steps[1];
  updateNote();
}

function updateNote() {
  if (!state.model) return;
  const { height, width } = chosenSize();
  $("size-note").textContent = `${width} × ${height} px`;
}
["aspect", "size"].forEach((id) => $(id).addEventListener("change", updateNote));
$("seed-random").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 2 ** 31); });

// ---------------------------------------------------------------- creating and following a job

$("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  const { height, width } = chosenSize();
  const frames = parseInt($("frames").value, 10);
  const request = {
    prompt: $("prompt").value,
    frames,
    steps: parseInt($("steps").value, 10),
    seed: parseInt($("seed").value || "0", 10),
    format: frames === 1 ? "png" : "mp4",
  };
  const button = $("generate");
  button.disabled = true;
  try {
    const image = $("image").files[0];
    if (image) {
      const form = new FormData();
      form.append("file", image);
      const upload = await json("/v1/uploads", { method: "POST", body: form });
      request.image = upload.id;
    } else {
      Object.assign(request, { height, width });
    }
    const job = await json("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    showCurrent(job);
    loadGallery();
    follow(job.id, (update) => {
      if (state.current === update.id) showCurrent(update);
      updateCard(update);
    });
  } catch (error) {
    say(error.message);
  } finally {
    button.disabled = false;
  }
});

async function follow(id, onJob) {
  // Server-sent events read with fetch; a stream that ends early (server restart, 10-minute
  // limit) is opened again.
  for (let attempt = 0; attempt < 1000; attempt++) {
    let last = null;
    try {
      const response = await api(`/v1/jobs/${id}/events`);
      if (!response.ok) return;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (type === "job") { last = JSON.parse(data); onJob(last); }
          if (type === "deleted") return;
        }
      }
    } catch (error) { /* the connection dropped: try again */ }
    if (last && TERMINAL.has(last.status)) return;
    await new Promise((resolve) => setTimeout(resolve, 1500));
  }
}

function progressText(job) {
  const p = job.progress;
  if (job.status === "queued") return job.queue_position ? `queued: ${job.queue_position} in line` : "queued";
  if (job.status === "running") return p.total ? `${p.stage}: step ${p.done} of ${p.total}` : p.stage;
  if (job.status === "failed") return `failed: ${job.error ? job.error.message : "no reason given"}`;
  if (job.status === "cancelled") return "cancelled";
  const r = job.result;
  return `done: ${r.width} × ${r.height}, ${r.frames} frame${r.frames > 1 ? "s" : ""}`;
}

async function resultUrl(job) {
  if (!state.blobs.has(job.id)) {
    const response = await api(job.result.url);
    if (!response.ok) throw new Error(`result: ${response.status}`);
    state.blobs.set(job.id, URL.createObjectURL(await response.blob()));
  }
  return state.blobs.get(job.id);
}

async function showCurrent(job) {
  state.current = job.id;
  $("current").hidden = false;
  $("current-prompt").textContent = job.prompt;
  $("progress-bar").style.width = `${Math.round(job.progress.fraction * 100)}%`;
  $("progress-text").textContent = progressText(job);
  $("current-cancel").hidden = TERMINAL.has(job.status);
  $("current-cancel").onclick = () => cancel(job.id);
  if (job.status !== "succeeded") { $("player").hidden = true; return; }
  const url = await resultUrl(job);
  if (state.current !== job.id) return;
  const video = $("video");
  if (video.dataset.job !== job.id) {
    video.dataset.job = job.id;
    video.poster = "";
    if (job.result.media_type.startsWith("video/")) { video.src = url; video.play().catch(() => {}); }
    else video.poster = url;
  }
  const ext = job.result.media_type.split("/")[1];
  $("download").href = url;
  $("download").download = `cinecube-${job.id.slice(0, 12)}.${ext}`;
  const p = job.provenance;
  $("provenance").textContent = p ? `watermark ${p.watermark_payload || "skipped"} · C2PA ${p.c2pa} · audit ${(p.audit_request_id || "").slice(0, 12)}` : "";
  $("player").hidden = false;
}

async function cancel(id) {
  try {
    const job = await json(`/v1/jobs/${id}/cancel`, { method: "POST" });
    updateCard(job);
    if (state.current === id) showCurrent(job);
  } catch (error) { say(error.message); }
}

async function remove(id) {
  try {
    await json(`/v1/jobs/${id}`, { method: "DELETE" });
    document.querySelector(`[data-job="${id}"]`)?.remove();
  } catch (error) { say(error.message); }
}

// ---------------------------------------------------------------- gallery

function card(job) {
  const node = document.createElement("article");
  node.className = "card";
  node.dataset.job = job.id;
  node.innerHTML = `<div class="thumb"></div><div class="body"><div class="title"></div>
    <div class="progress"><div class="bar"></div></div>
    <div class="row"><span class="badge"></span><span class="buttons"></span></div>
    <div class="muted small detail"></div></div>`;
  fillCard(node, job);
  return node;
}

function fillCard(node, job) {
  node.querySelector(".title").textContent = job.prompt;
  node.querySelector(".title").title = job.prompt;
  const badge = node.querySelector(".badge");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  node.querySelector(".progress").hidden = TERMINAL.has(job.status);
  node.querySelector(".bar").style.width = `${Math.round(job.progress.fraction * 100)}%`;
  node.querySelector(".detail").textContent = job.status === "succeeded" ? `seed ${job.request.seed} · ${job.request.steps} steps` : progressText(job);
  const buttons = node.querySelector(".buttons");
  buttons.replaceChildren();
  if (!TERMINAL.has(job.status)) {
    const b = document.createElement("button");
    b.className = "quiet danger cancel";
    b.textContent = "Cancel";
    b.onclick = () => cancel(job.id);
    buttons.append(b);
  } else {
    const d = document.createElement("button");
    d.className = "quiet";
    d.textContent = "Delete";
    d.onclick = () => remove(job.id);
    buttons.append(d);
  }
  const thumb = node.querySelector(".thumb");
  if (job.status === "succeeded" && thumb.dataset.filled !== "1") {
    thumb.dataset.filled = "1";
    resultUrl(job).then((url) => {
      const media = job.result.media_type.startsWith("video/") ? document.createElement("video") : document.createElement("img");
      if (media.tagName === "VIDEO") Object.assign(media, { muted: true, loop: true, autoplay: true, playsInline: true });
      media.src = url;
      thumb.replaceChildren(media);
      thumb.onclick = () => showCurrent(job);
    }).catch(() => { thumb.textContent = "result unavailable"; });
  } else if (job.status !== "succeeded") {
    thumb.textContent = job.status;
  }
}

function updateCard(job) {
  const node = document.querySelector(`.card[data-job="${job.id}"]`);
  if (node) fillCard(node, job); else $("gallery").prepend(card(job));
}

async function loadGallery(older = false) {
  try {
    const query = older && state.cursor ? `?limit=24&cursor=${state.cursor}` : "?limit=24";
    const page = await json(`/v1/jobs${query}`);
    if (!older) $("gallery").replaceChildren();
    for (const job of page.jobs) {
      const existing = document.querySelector(`.card[data-job="${job.id}"]`);
      if (existing) fillCard(existing, job); else $("gallery").append(card(job));
    }
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    for (const job of page.jobs) {
      if (!TERMINAL.has(job.status) && job.id !== state.current) follow(job.id, updateCard);
    }
  } catch (error) {
    if (error.status !== 401) say(error.message);
  }
}
$("refresh").addEventListener("click", () => loadGallery());
$("more").addEventListener("click", () => loadGallery(true));

// ---------------------------------------------------------------- verify

async function verify(file) {
  const box = $("verdict");
  box.hidden = false;
  box.className = "verdict";
  box.textContent = `checking ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  try {
    const report = await json("/v1/verify", { method: "POST", body: form });
    box.className = `verdict ${report.verified ? "good" : "bad"}`;
    const rows = [
      ["C2PA", report.c2pa.state + (report.c2pa.signer ? ` (${report.c2pa.signer})` : "")],
      ["watermark", report.watermark.detected ? `payload ${report.watermark.payload}` : "not found"],
      ["detector", report.detector.score == null ? "n/a" : report.detector.score.toFixed(2)],
    ];
    const list = document.createElement("dl");
    for (const [name, value] of rows) {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      list.append(dt, dd);
    }
    const head = document.createElement("strong");
    head.textContent = report.verdict;
    box.replaceChildren(head, list);
  } catch (error) {
    box.className = "verdict bad";
    box.textContent = error.message;
  }
}

const drop = $("drop");
$("verify-file").addEventListener("change", (e) => { if (e.target.files[0]) verify(e.target.files[0]); });
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files[0]) verify(e.dataTransfer.files[0]); });

// ---------------------------------------------------------------- start

async function start() {
  if (!(await checkKey())) return false;
  try {
    state.model = await json("/v1/model");
    fillControls();
  } catch (error) { say(error.message); return false; }
  await loadGallery();
  return true;
}

start();
