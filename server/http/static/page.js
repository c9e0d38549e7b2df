// The page at /: one image through the API, its answer drawn on the image; the gallery for
// admin keys. Plain JavaScript, no libraries: it must work with no internet.
"use strict";

const API = "/api/v2/";
const GALLERY = "/api/v2/gallery/";
const KEY_STORAGE = "imagerecognize.apikey";
const MAX_CANVAS_WIDTH = 900;
const COLOURS = ["#ff00ff", "#00c8ff", "#ffb000", "#00d060", "#ff3030", "#8a5cff"];

// What each status means to a person; the server's own message follows in brackets.
const WORDS = {
  300: "The server received no data.",
  400: "Enter an API key.",
  401: "This API key is not accepted.",
  402: "This key has no quota left: ask the server's operator for more.",
  403: "This page's origin is not allowed to use the API.",
  404: "Not found.",
  412: "The file could not be read as an image: it is truncated or corrupt.",
  413: "The image is too large for this server.",
  415: "Only PNG and JPEG images are accepted.",
  420: "Unknown analysis type.",
  421: "A field is missing or has a wrong value.",
  500: "The server failed on this request.",
  503: "This analysis is not available right now.",
};

const $ = (id) => document.getElementById(id);
let image = null; // the chosen image, decoded by the browser (EXIF orientation applied)
let chosenFile = null;

function showStatus(element, text, isError) {
  element.textContent = text;
  element.className = isError ? "error" : "ok";
}

function describeFailure(status, body, response) {
  const words = WORDS[status] || `The server answered ${status}.`;
  let text = `${words} (${status} ${body ? body.status_message : ""})`.replace(" )", ")");
  const retry = response && response.headers.get("Retry-After");
  if (retry) text += ` Try again in ${retry} s.`;
  // Every answer has an id; only a server-side failure needs it, to find its log line.
  const requestId = status >= 500 && response && response.headers.get("X-Request-Id");
  if (requestId) text += ` Request id for the server's log: ${requestId}.`;
  return text;
}

// Every call asks for JSON and reads the envelope; a network failure becomes status 0.
async function callApi(url, options) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: { Accept: "application/json" } });
  } catch (error) {
    return { status: 0, text: "The server could not be reached." };
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (response.ok && body && body.status === 200) return { status: 200, body };
  return { status: response.status, body, text: describeFailure(response.status, body, response) };
}

// --- key: kept in localStorage only when "remember" is ticked ---------------------------
function loadKey() {
  const stored = localStorage.getItem(KEY_STORAGE);
  if (stored) {
    $("apikey").value = stored;
    $("remember").checked = true;
  }
}

function saveKey() {
  if ($("remember").checked && $("apikey").value.trim()) {
    localStorage.setItem(KEY_STORAGE, $("apikey").value.trim());
  } else {
    localStorage.removeItem(KEY_STORAGE);
  }
}

// --- choosing an image ---------------------------------------------------------------------
function chooseFile(file) {
  chosenFile = file;
  $("drop-text").textContent = `${file.name} (${Math.round(file.size / 1024)} KB)`;
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    image = img;
    draw(null);
  };
  img.onerror = () => {
    image = null;
    clearCanvas();
  };
  img.src = url;
}

function clearCanvas() {
  const canvas = $("canvas");
  canvas.width = 0;
  canvas.height = 0;
}

function showParams() {
  const type = $("type").value;
  for (const label of document.querySelectorAll(".param")) {
    label.hidden = label.dataset.for !== type;
  }
}

// --- drawing the answer ---------------------------------------------------------------------
function draw(data) {
  const canvas = $("canvas");
  if (!image) return clearCanvas();
  const scale = Math.min(1, MAX_CANVAS_WIDTH / image.naturalWidth);
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  canvas.dataset.scale = String(scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  if (!data) return;
  // Coordinates come in pixels of the full image as displayed; the canvas may be smaller.
  const s = data.image && data.image.width ? canvas.width / data.image.width : scale;
  ctx.lineWidth = 3;
  ctx.font = "bold 14px system-ui, sans-serif";
  const objects = data.objects || [];
  if (data.type === "objects") {
    let i = 0;
    for (const label of objects) {
      const colour = COLOURS[i++ % COLOURS.length];
      for (const instance of label.instances || []) {
        box(ctx, instance.box, s, colour, `${label.name} ${Math.round(instance.confidence)}%`);
      }
    }
  } else if (data.type === "detect_faces") {
    for (const face of objects) {
      box(ctx, face.box, s, COLOURS[0], `${Math.round(face.confidence)}%`);
      landmarks(ctx, face.landmarks, s, COLOURS[1]);
    }
  } else if (data.type === "celebrities") {
    for (const person of objects) {
      box(ctx, person.box, s, COLOURS[0], `${person.name} ${Math.round(person.confidence)}%`);
      landmarks(ctx, person.landmarks, s, COLOURS[1]);
    }
    for (const face of data.unrecognized || []) {
      box(ctx, face.box, s, COLOURS[2], "unrecognised", [8, 5]);
      landmarks(ctx, face.landmarks, s, COLOURS[1]);
    }
  } else if (data.type === "detect_text") {
    for (const line of objects) {
      if (line.polygon) polygon(ctx, line.polygon, s, COLOURS[0]);
      else box(ctx, line.box, s, COLOURS[0], null);
      const b = line.box;
      tag(ctx, line.text, b.left * s, (b.top + b.height) * s + 17, COLOURS[0]);
    }
  } else if (data.type === "nsfw") {
    let y = 8;
    for (const score of objects) {
      tag(ctx, `${score.name} ${score.confidence.toFixed(1)}%`, 8, (y += 20), COLOURS[0]);
    }
  }
}

function box(ctx, b, s, colour, text, dash) {
  if (!b) return;
  ctx.save();
  ctx.strokeStyle = colour;
  ctx.setLineDash(dash || []);
  ctx.strokeRect(b.left * s, b.top * s, b.width * s, b.height * s);
  ctx.restore();
  if (text) tag(ctx, text, b.left * s, b.top * s > 20 ? b.top * s - 5 : (b.top + b.height) * s + 17, colour);
}

function polygon(ctx, points, s, colour) {
  ctx.save();
  ctx.strokeStyle = colour;
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
  ctx.closePath();
  ctx.stroke();
  ctx.restore();
}

function landmarks(ctx, points, s, colour) {
  ctx.save();
  ctx.fillStyle = colour;
  for (const p of Object.values(points || {})) {
    ctx.beginPath();
    ctx.arc(p.x * s, p.y * s, 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.restore();
}

function tag(ctx, text, x, y, colour) {
  const width = ctx.measureText(text).width;
  ctx.fillStyle = "rgba(0, 0, 0, 0.7)";
  ctx.fillRect(x, y - 14, width + 8, 18);
  ctx.fillStyle = colour;
  ctx.fillText(text, x + 4, y);
}

function summarise(data) {
  const list = $("summary");
  list.replaceChildren();
  const add = (text) => list.appendChild(document.createElement("li")).append(text);
  const objects = data.objects || [];
  if (data.type === "objects") {
    objects.forEach((o) => add(`${o.name}: ${o.confidence}%` +
      (o.instances.length ? `, ${o.instances.length} box(es)` : " (whole image)")));
  } else if (data.type === "detect_faces") {
    add(`${objects.length} face(s)`);
  } else if (data.type === "celebrities") {
    objects.forEach((o) => add(`${o.name}: ${o.confidence}%`));
    add(`${(data.unrecognized || []).length} unrecognised face(s)`);
  } else if (data.type === "detect_text") {
    objects.forEach((o) => add(`“${o.text}” ${o.confidence}%`));
  } else if (data.type === "nsfw") {
    objects.forEach((o) => add(`${o.name}: ${o.confidence}%`));
  }
  if (data.quota !== undefined) add(`quota left: ${data.quota === null ? "unlimited" : data.quota}`);
}

async function analyse(event) {
  event.preventDefault();
  saveKey();
  const status = $("status");
  if (!chosenFile) return showStatus(status, "Choose an image first.", true);
  const type = $("type").value;
  const form = new FormData();
  form.append("apikey", $("apikey").value.trim());
  form.append("type", type);
  for (const input of document.querySelectorAll(`.param[data-for="${type}"] input`)) {
    form.append(input.name, input.value);
  }
  form.append("file", chosenFile);
  showStatus(status, "Analysing…", false);
  $("analyse").disabled = true;
  const answer = await callApi(API, { method: "POST", body: form });
  $("analyse").disabled = false;
  $("json").textContent = answer.body ? JSON.stringify(answer.body, null, 2) : "";
  if (answer.status !== 200) {
    draw(null);
    $("summary").replaceChildren();
    return showStatus(status, answer.text, true);
  }
  const data = answer.body.data;
  showStatus(status, `Done in ${data.elapsed_ms} ms${data.cached ? " (stored result)" : ""}.`, false);
  draw(data);
  summarise(data);
}

// --- gallery -------------------------------------------------------------------------------
function galleryUrl(path) {
  return `${GALLERY}${path}?apikey=${encodeURIComponent($("apikey").value.trim())}`;
}

async function loadGallery() {
  saveKey();
  const status = $("gallery-status");
  const answer = await callApi(galleryUrl(""), { method: "GET" });
  const list = $("people");
  list.replaceChildren();
  if (answer.status !== 200) return showStatus(status, answer.text, true);
  const people = answer.body.data.people;
  showStatus(status, `${people.length} person(s) enrolled.`, false);
  for (const person of people) {
    const item = list.appendChild(document.createElement("li"));
    item.append(`${person.name}: ${person.faces.length} face(s)`);
    const remove = item.appendChild(document.createElement("button"));
    remove.type = "button";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => removePerson(person.name));
  }
}

async function removePerson(name) {
  const answer = await callApi(galleryUrl(encodeURIComponent(name)), { method: "DELETE" });
  if (answer.status !== 200) return showStatus($("gallery-status"), answer.text, true);
  await loadGallery();
  showStatus($("gallery-status"), `Removed ${name}.`, false);
}

async function enrol(event) {
  event.preventDefault();
  saveKey();
  const form = new FormData();
  form.append("apikey", $("apikey").value.trim());
  form.append("name", $("enrol-name").value.trim());
  for (const file of $("enrol-files").files) form.append("file", file);
  showStatus($("gallery-status"), "Enrolling…", false);
  const answer = await callApi(GALLERY, { method: "POST", body: form });
  if (answer.status !== 200) return showStatus($("gallery-status"), answer.text, true);
  const faces = answer.body.data.face_ids.length;
  await loadGallery();
  showStatus($("gallery-status"), `Enrolled ${answer.body.data.name} (${faces} face(s)).`, false);
}

// --- wiring ----------------------------------------------------------------------------------
function setUp() {
  loadKey();
  showParams();
  $("type").addEventListener("change", showParams);
  $("file").addEventListener("change", () => $("file").files[0] && chooseFile($("file").files[0]));
  $("remember").addEventListener("change", saveKey);
  $("analyse-form").addEventListener("submit", analyse);
  $("gallery-load").addEventListener("click", loadGallery);
  $("enrol-form").addEventListener("submit", enrol);
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files[0]) chooseFile(e.dataTransfer.files[0]);
  });
}

setUp();
