// The live page of eqsdk serve: encode a character, a background and a driving clip once
// (/v1/encode/character, /v1/encode/background, /v1/encode/clip), then each slider position
// composes that frame (/v1/compose with `frame`: only the warp and g run on the server).
// Frame latency: from the slider's input event to the composed image decoded and painted.
"use strict";

const KINDS = ["character", "background", "drive"];
const state = {
  model: null,
  examples: {},          // model -> kind -> [{name, url}]
  choice: {},            // kind -> {name, blob: () => Promise<Blob>}
  ids: {},               // character, background, motion -> id on the server (for state.model)
  frameImages: [],       // the clip's frames at the model's size (data: URLs)
  latencies: [],         // ms per composed frame shown
  requestMs: [],         // ms of its compose request
  generation: 0,         // bumped by every new encoding round; stale answers are dropped
};
window.eqsdkLive = state; // for the browser test and the console

const $ = (id) => document.getElementById(id);

function setStatus(text, phase) {
  $("status").textContent = text;
  if (phase) document.body.dataset.state = phase;
}

async function checked(response) {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
  const error = new Error(message);
  error.status = response.status;
  throw error;
}

async function getJSON(url) {
  return (await checked(await fetch(url))).json();
}

async function post(url, fields) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Blob) form.append(k, v, v.name || k); else form.append(k, v);
  }
  return (await checked(await fetch(url, { method: "POST", body: form }))).json();
}

// Pickers: the served model's examples as thumbnails, plus an upload.
function fillPickers() {
  const examples = state.examples[state.model] || {};
  for (const kind of KINDS) {
    const box = document.querySelector(`#pick-${kind} .choices`);
    box.replaceChildren();
    for (const item of examples[kind] || []) {
      addChoice(kind, item.name, item.url, () => fetch(item.url).then(checked).then((r) => r.blob()));
    }
    const first = box.querySelector("button");
    if (first) first.click(); else state.choice[kind] = null;
  }
}

function addChoice(kind, name, thumbUrl, blob) {
  const button = document.createElement("button");
  button.type = "button";
  button.title = name;
  button.dataset.name = name;
  const img = document.createElement("img");
  img.src = thumbUrl;
  img.alt = name;
  button.append(img);
  button.addEventListener("click", () => {
    for (const b of button.parentElement.children) b.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    state.choice[kind] = { name, blob };
    delete state.ids[kind === "drive" ? "motion" : kind];
    scheduleEncode();
  });
  document.querySelector(`#pick-${kind} .choices`).append(button);
  return button;
}

for (const kind of KINDS) {
  document.querySelector(`#pick-${kind} input[type=file]`).addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    addChoice(kind, file.name, URL.createObjectURL(file), async () => file).click();
    event.target.value = "";
  });
}

// Encoding: whatever is not encoded yet for the current choices, then the slider's frame.
let encodeTimer = null;
function scheduleEncode() {
  state.generation++;                  // answers for the old choices are stale from here
  clearTimeout(encodeTimer);           // the pickers' first clicks arrive together: one round
  encodeTimer = setTimeout(encodeMissing, 0);
}

async function encodeMissing() {
  const generation = ++state.generation;
  const model = state.model;
  if (KINDS.some((k) => !state.choice[k])) {
    setStatus("pick or upload a character, a background and a driving clip", "idle");
    return;
  }
  setStatus("encoding", "encoding");
  $("slider").disabled = $("play").disabled = true;
  const t0 = performance.now();
  try {
    const jobs = [];
    for (const kind of ["character", "background"]) {
      if (!state.ids[kind]) {
        jobs.push(state.choice[kind].blob().then((image) =>
          post(`/v1/encode/${kind}`, { image, model })).then((r) => ["ids", kind, r]));
      }
    }
    if (!state.ids.motion) {
      jobs.push(state.choice.drive.blob().then((clip) =>
        post("/v1/encode/clip", { clip, model })).then((r) => ["clip", "motion", r]));
    }
    const done = await Promise.all(jobs);
    if (generation !== state.generation) return; // a newer choice or model took over
    for (const [what, key, r] of done) {
      state.ids[key] = r.id;
      if (what === "clip") {
        state.frameImages = r.frame_images;
        const slider = $("slider");
        slider.max = String(r.frames - 1);
        slider.value = String(Math.min(Number(slider.value), r.frames - 1));
      }
    }
  } catch (error) {
    if (generation === state.generation) setStatus(`encoding failed: ${error.message}`, "error");
    return;
  }
  const frames = state.frameImages.length;
  setStatus(`encoded in ${Math.round(performance.now() - t0)} ms; ${frames} frame` +
            `${frames === 1 ? "" : "s"}: drag the slider`, "ready");
  $("slider").disabled = $("play").disabled = false;
  showFrame(Number($("slider").value), performance.now());
}

// Composing: the newest slider position wins; one request in flight at a time.
let inFlight = false;
let pending = null; // {frame, t0}
let shownUrl = null;

function showFrame(frame, t0) {
  $("driving").src = state.frameImages[frame] || "";
  $("frame-label").textContent = `${frame + 1} / ${state.frameImages.length}`;
  pending = { frame, t0 };
  if (!inFlight) pump();
}

async function pump() {
  inFlight = true;
  while (pending) {
    const { frame, t0 } = pending;
    pending = null;
    const generation = state.generation;
    const sent = performance.now();
    const inputs = KINDS.map((k) => state.choice[k].name).join(" | ");
    try {
      const response = await fetch("/v1/compose", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ character: state.ids.character, motion: state.ids.motion,
                               background: state.ids.background, frame, model: state.model }),
      });
      if (response.status === 404 && generation === state.generation) {
        state.ids = {};            // an id expired from the server's cache: encode again
        scheduleEncode();
        break;
      }
      const blob = await (await checked(response)).blob();
      const requestMs = performance.now() - sent;
      if (generation !== state.generation) continue;
      const img = $("render");
      const url = URL.createObjectURL(blob);
      img.src = url;
      await img.decode();
      await painted();
      if (shownUrl) URL.revokeObjectURL(shownUrl);
      shownUrl = url;
      img.dataset.frame = String(frame);
      img.dataset.model = state.model;
      img.dataset.inputs = inputs;
      recordLatency(performance.now() - t0, requestMs);
    } catch (error) {
      if (generation === state.generation) setStatus(`compose failed: ${error.message}`, "error");
    }
  }
  inFlight = false;
}

function painted() { // resolves after the next paint (the frame callback runs just before it)
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

function median(values) {
  const sorted = values.slice(-50).sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

// ms: slider input to image shown; requestMs: of it, the compose request (sent to body read).
function recordLatency(ms, requestMs) {
  state.latencies.push(ms);
  state.requestMs.push(requestMs);
  const el = $("latency");
  el.dataset.lastMs = ms.toFixed(1);
  el.dataset.medianMs = median(state.latencies).toFixed(1);
  el.dataset.medianRequestMs = median(state.requestMs).toFixed(1);
  el.dataset.count = String(state.latencies.length);
  el.textContent = `frame latency ${ms.toFixed(1)} ms, median ${el.dataset.medianMs} ms over the ` +
                   `last ${Math.min(50, state.latencies.length)} frames (slider input to image shown; ` +
                   `the compose request ${el.dataset.medianRequestMs} ms of it)`;
}

$("slider").addEventListener("input", (event) => showFrame(Number(event.target.value), performance.now()));

let playing = null;
$("play").addEventListener("click", () => {
  if (playing) { clearInterval(playing); playing = null; $("play").textContent = "play"; return; }
  $("play").textContent = "stop";
  playing = setInterval(() => {
    const slider = $("slider");
    slider.value = String((Number(slider.value) + 1) % (Number(slider.max) + 1));
    slider.dispatchEvent(new Event("input"));
  }, 100);
});

// Models: switching drops every id (encodings belong to one model) and encodes anew.
$("model").addEventListener("change", (event) => selectModel(event.target.value));

function selectModel(name) {
  state.model = name;
  state.ids = {};
  state.frameImages = [];
  state.latencies = [];      // figures per model
  state.requestMs = [];
  const info = state.models.find((m) => m.name === name);
  $("runtime").textContent = info ? `${info.image_size}x${info.image_size}, ${info.runtime}` : "";
  fillPickers();
}

async function start() {
  try {
    const [models, examples] = await Promise.all([getJSON("/v1/models"), getJSON("/v1/examples")]);
    state.models = models.models;
    state.examples = examples;
    for (const m of models.models) $("model").append(new Option(m.name, m.name));
    $("model").value = models.default;
    selectModel(models.default);
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`, "error");
  }
}
start();
