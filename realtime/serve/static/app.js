// The page of emocam serve: the live video, each face's label and class bars, a rolling minute per face, and a drop
// zone that sends a photo to /v1/analyze. Everything comes from this server; a token, where the server has one,
// travels as the cookie that opening /?token=TOKEN sets.
"use strict";

const WINDOW_S = 60;      // the timeline's span
const GONE_S = 2;         // a face not seen for this long is shown as gone
const COLOURS = ["#e5534b", "#8f6b2e", "#a371f7", "#f2cc60", "#4c8eda", "#f0883e", "#8b949e", "#3fb950", "#db61a2"];
const $ = (id) => document.getElementById(id);

let classes = [];
const faces = new Map();  // face id -> {card, history: [[t, probs | null]], seen}
let latestT = 0;
let frames = 0;
let drawPending = false;

function colour(k) { return COLOURS[k % COLOURS.length]; }

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (response.status === 401) {
    notice("This server needs its token: open this page once as /?token=YOUR_TOKEN.");
  }
  return response;
}

function probsOf(record) {
  // Smoothed where the face is labelled, else the raw answer; null where the face was not classified.
  const smoothed = classes.map((c) => record["s_" + c]);
  if (smoothed.every((v) => v !== null && v !== undefined)) return smoothed;
  const raw = classes.map((c) => record["p_" + c]);
  return raw.every((v) => v !== null && v !== undefined) ? raw : null;
}

function labelOf(record) {
  return record.label !== null ? record.label : "(" + record.quality + ")";
}

function barsElement() {
  const bars = document.createElement("div");
  bars.className = "bars";
  classes.forEach((c, k) => {
    const name = document.createElement("span");
    name.textContent = c;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.dataset.cls = c;
    fill.style.background = colour(k);
    bar.appendChild(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    bars.append(name, bar, pct);
  });
  return bars;
}

function setBars(bars, probs) {
  const fills = bars.querySelectorAll(".fill");
  const pcts = bars.querySelectorAll(".pct");
  classes.forEach((c, k) => {
    const p = probs ? probs[k] : 0;
    fills[k].style.width = (100 * p).toFixed(1) + "%";
    pcts[k].textContent = probs ? Math.round(100 * p) + "%" : "";
  });
}

function faceCard(id) {
  const card = document.createElement("div");
  card.className = "face";
  card.dataset.id = id;
  card.innerHTML = '<div class="face-head"><span class="label"></span><span class="face-id"></span></div>';
  card.querySelector(".face-id").textContent = "face #" + id;
  card.appendChild(barsElement());
  const timeline = document.createElement("div");
  timeline.className = "timeline";
  timeline.dataset.id = id;
  timeline.innerHTML = '<small></small><canvas width="600" height="70"></canvas>';
  timeline.querySelector("small").textContent = "face #" + id;
  return {card, timeline, history: [], seen: 0};
}

function onRecords(event) {
  const data = JSON.parse(event.data);
  latestT = data.t;
  frames += 1;
  $("frame-count").textContent = "frame " + data.frame + " · " + data.t.toFixed(1) + " s";
  for (const record of data.records) {
    const id = record.face_id;
    if (!faces.has(id)) {
      const face = faceCard(id);
      faces.set(id, face);
      const list = $("faces");
      list.querySelector(".empty")?.remove();
      list.appendChild(face.card);
      $("timelines").appendChild(face.timeline);
    }
    const face = faces.get(id);
    const probs = probsOf(record);
    face.seen = data.t;
    face.card.querySelector(".label").textContent = labelOf(record);
    setBars(face.card.querySelector(".bars"), record.label !== null ? probs : null);
    face.history.push([data.t, record.label !== null ? probs : null]);
  }
  for (const [id, face] of faces) {
    while (face.history.length && face.history[0][0] < latestT - WINDOW_S) face.history.shift();
    face.card.classList.toggle("gone", latestT - face.seen > GONE_S);
    if (!face.history.length) {  // not seen for a whole minute
      face.card.remove();
      face.timeline.remove();
      faces.delete(id);
    }
  }
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(drawTimelines);
  }
}

function drawTimelines() {
  drawPending = false;
  for (const face of faces.values()) {
    const canvas = face.timeline.querySelector("canvas");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const x = (t) => w * (1 - (latestT - t) / WINDOW_S);
    const step = Math.max(2, w / (WINDOW_S * 10));
    // Stacked shares of the classes at each moment the face was labelled; gaps where it was not.
    for (const [t, probs] of face.history) {
      if (!probs) continue;
      let y = h;
      probs.forEach((p, k) => {
        ctx.fillStyle = colour(k);
        ctx.fillRect(x(t), y - p * h, step, p * h);
        y -= p * h;
      });
    }
  }
}

function onStatus(event) {
  const s = JSON.parse(event.data);
  $("status").textContent = "live: " + s.source + " — " + s.state + (s.error ? " (" + s.error + ")" : "");
}

function legend() {
  $("legend").replaceChildren(...classes.map((c, k) => {
    const item = document.createElement("span");
    item.innerHTML = "<i></i>";
    item.querySelector("i").style.background = colour(k);
    item.append(c);
    return item;
  }));
}

async function analyzeFile(file) {
  if (!file) return;
  $("drop-status").textContent = "analysing " + file.name + "…";
  $("drop-result").replaceChildren();
  $("drop-canvas").hidden = true;
  let response;
  try {
    response = await api("/v1/analyze", {method: "POST", body: file,
                                         headers: {"Content-Type": file.type || "application/octet-stream"}});
  } catch (e) {
    $("drop-status").textContent = "the server did not answer (" + e + ")";
    return;
  }
  const answer = await response.json();
  if (!response.ok) {
    $("drop-status").textContent = "refused: " + answer.error;
    return;
  }
  $("drop-status").textContent = answer.faces + (answer.faces === 1 ? " face" : " faces") + " in " + file.name +
    (answer.kind === "video" ? " (" + answer.frames + " frames)" : "");
  // A video: each face's last record; an image: its one record each.
  const last = new Map();
  for (const record of answer.records) if (record.face_id !== null) last.set(record.face_id, record);
  for (const [id, record] of last) {
    const item = document.createElement("div");
    item.className = "face";
    item.dataset.id = id;
    item.innerHTML = '<div class="face-head"><span class="label"></span><span class="face-id"></span></div>';
    item.querySelector(".label").textContent = labelOf(record);
    item.querySelector(".face-id").textContent = "face #" + id;
    const bars = barsElement();
    setBars(bars, record.label !== null ? probsOf(record) : null);
    item.appendChild(bars);
    $("drop-result").appendChild(item);
  }
  if (answer.kind === "image") drawAnnotated(file, [...last.values()]);
}

function drawAnnotated(file, records) {
  const image = new Image();
  image.onload = () => {
    const canvas = $("drop-canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0);
    const line = Math.max(2, image.naturalWidth / 300);
    ctx.lineWidth = line;
    ctx.textBaseline = "top";
    for (const r of records) {
      const k = r.label !== null ? classes.indexOf(r.label) : -1;
      ctx.strokeStyle = ctx.fillStyle = k >= 0 ? colour(k) : "#8b949e";
      ctx.strokeRect(r.x, r.y, r.w, r.h);
      // The label sized by its face, on a solid tag above the box (below it at the image's top edge), so that
      // neighbouring faces' labels stay apart and legible on any background.
      const size = Math.max(12, Math.round(r.w / 6)), pad = Math.round(size / 5);
      ctx.font = "bold " + size + "px system-ui, sans-serif";
      const text = "#" + r.face_id + " " + labelOf(r);
      const height = size + 2 * pad, top = r.y - height >= 0 ? r.y - height : r.y + r.h;
      ctx.fillRect(r.x - line / 2, top, ctx.measureText(text).width + 2 * pad, height);
      ctx.fillStyle = "#111";
      ctx.fillText(text, r.x - line / 2 + pad, top + pad);
    }
    canvas.hidden = false;
    URL.revokeObjectURL(image.src);
  };
  image.src = URL.createObjectURL(file);
}

function dropZone() {
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    analyzeFile(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => analyzeFile(e.target.files[0]));
}

async function start() {
  dropZone();
  const response = await api("/v1/health");
  if (!response.ok) {
    $("status").textContent = "not connected";
    return;
  }
  const health = await response.json();
  classes = health.classes;
  legend();
  $("status").textContent = "emocam " + health.version + " · " + health.backend + " · " + health.model;
  if (!health.live) {
    $("status").textContent += " · no live source (start emocam serve --source 0)";
    return;
  }
  for (const id of ["live", "now-panel", "timeline-panel"]) $(id).hidden = false;
  $("video").src = "/v1/stream.mjpg";
  const events = new EventSource("/v1/events");
  events.addEventListener("records", onRecords);
  events.addEventListener("status", onStatus);
}

start();
