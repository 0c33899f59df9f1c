// The page only draws and displays: every number comes from POST /api/analyse (the project's Python).
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const seen = document.getElementById("seen");
const message = document.getElementById("message");
const targetSelect = document.getElementById("target");
const temperatureSlider = document.getElementById("temperature");
const softmaxFirst = document.getElementById("softmax-first");

let source = null;        // what the server gets: "pad" (the drawing, as a PNG) or the uploaded file
let drawn = false;        // anything on the pad since the last clear
let busy = false;         // one request at a time; a newer picture waits in `again`
let again = false;
let finishedAt = null;    // performance.now() when `source` was finished (a released stroke, an upload)

// --- formatting (display only) ---
const fixed = (v, digits = 4) => (Object.is(v, -0) ? 0 : v).toFixed(digits);
const loss6 = (v) => v.toFixed(6);   // float32 losses are good to about 1e-6 for logits of ~10
const small = (v) => (Math.abs(v) >= 1e-4 || v === 0 ? fixed(v, 4) : v.toExponential(2));

// --- drawing ---
function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

let last = null;
pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  last = point(event);
  ink.lineWidth = 20;
  ink.lineCap = ink.lineJoin = "round";
  ink.strokeStyle = "#111";
  ink.beginPath();
  ink.moveTo(...last);
  ink.lineTo(...last);
  ink.stroke();
  drawn = true;
});
pad.addEventListener("pointermove", (event) => {
  if (!last) return;
  const next = point(event);
  ink.beginPath();
  ink.moveTo(...last);
  ink.lineTo(...next);
  ink.stroke();
  last = next;
  sendDrawing(null);   // numbers follow the pen; `busy` keeps it to one request at a time
});
const endStroke = () => {
  if (!last) return;
  last = null;
  sendDrawing(performance.now());
};
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function sendDrawing(finished) {
  source = "pad";   // encoded when it is sent: while a request is out, strokes cost no encoding
  if (finished !== null) finishedAt = finished;
  request();
}

function padAsPng() {
  // toDataURL, not toBlob: Chromium encodes toBlob in idle time, which can wait a second
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], {type: "image/png"});
}

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  source = null;
  document.getElementById("upload").value = "";
  showMessage("Draw a digit with the mouse, a finger or a pen.", false);
  document.body.classList.add("empty");
});

document.getElementById("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  clearPad();
  source = file;
  finishedAt = performance.now();
  request();
  // show it on the pad too (fitted, on white), so that strokes can be added to it
  createImageBitmap(file).then((bitmap) => {
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ink.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    drawn = true;
  }).catch(() => {});   // not an image the browser can decode: the server's message says so
});

// --- settings ---
function temperature() {
  return Math.pow(10, Number(temperatureSlider.value) / 100);
}
temperatureSlider.addEventListener("input", () => {
  document.getElementById("temperature-value").textContent = temperature().toFixed(3);
  request();
});
document.getElementById("temperature-reset").addEventListener("click", () => {
  temperatureSlider.value = 0;
  document.getElementById("temperature-value").textContent = "1.000";
  request();
});
targetSelect.addEventListener("change", request);
softmaxFirst.addEventListener("change", () => {
  document.getElementById("mistake").hidden = !softmaxFirst.checked;
});

// --- talking to the server ---
async function request() {
  if (!source) return;
  if (busy) { again = true; return; }
  busy = true;
  const started = performance.now();
  const finished = finishedAt;   // this request carries the finished picture: time it to the numbers
  finishedAt = null;
  const query = new URLSearchParams({target: targetSelect.value, temperature: temperature().toString()});
  try {
    const payload = source === "pad" ? padAsPng() : source;
    const response = await fetch("/api/analyse?" + query, {method: "POST", body: payload});
    let body;
    try {
      body = await response.json();
    } catch (error) {
      body = {error: `the server answered ${response.status} without a result`};
    }
    if (!response.ok || body.error) {
      showMessage(body.error || `the server answered ${response.status}`, true);
      document.getElementById("notes").replaceChildren();
      document.body.classList.add("empty");
    } else {
      render(body);
      const now = performance.now();
      const sinceStroke = finished === null ? null : now - finished;
      document.getElementById("timing").textContent =
        `server ${body.server_ms.toFixed(1)} ms, request ${(now - started).toFixed(1)} ms` +
        (sinceStroke === null ? "" : `, from the end of the stroke (or the upload) to the numbers ${sinceStroke.toFixed(1)} ms`);
      if (sinceStroke !== null) document.body.dataset.strokeToNumbersMs = sinceStroke.toFixed(1);
    }
  } catch (error) {
    showMessage("The demo server cannot be reached: is scripts/demo.py still running?", true);
  } finally {
    busy = false;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    if (again) { again = false; request(); }
  }
}

function showMessage(text, isError) {
  message.textContent = text;
  message.classList.toggle("error", isError);
}

// --- display ---
function cell(row, text, value, scale, signed) {
  // the number, then a bar of length |value| / scale; signed bars grow left (negative) or right of a middle line
  const td = row.insertCell();
  const holder = document.createElement("div");
  holder.className = "barcell";
  const label = document.createElement("span");
  label.className = "number";
  label.textContent = text;
  const track = document.createElement("span");
  track.className = "track" + (signed ? " signed" : "");
  const bar = document.createElement("span");
  const width = Math.min(100, 100 * Math.abs(value) / (scale || 1));
  bar.className = "bar " + (value < 0 ? "negative" : "positive");
  bar.style.width = (signed ? width / 2 : width) + "%";
  track.appendChild(bar);
  holder.append(label, track);
  td.appendChild(holder);
  return td;
}

function render(r) {
  document.body.classList.remove("empty");
  showMessage("The numbers are for the picture below, the network's input.", false);
  const notes = document.getElementById("notes");
  notes.replaceChildren(...r.notes.map((note) => Object.assign(document.createElement("li"), {textContent: note})));
  drawPicture(r.picture);
  document.getElementById("prediction").textContent = r.prediction;
  document.getElementById("confidence").textContent =
    `(softmax ${(100 * r.softmax[r.prediction]).toFixed(1)} % at T = ${r.temperature.toFixed(3)})`;

  document.getElementById("logit-heading").textContent = r.temperature === 1 ? "logit x" : "x / T";
  const maxLogit = Math.max(...r.scaled_logits.map(Math.abs));
  const maxLog = Math.max(...r.log_softmax.map(Math.abs));
  const scores = document.querySelector("#scores tbody");
  scores.replaceChildren();
  r.scaled_logits.forEach((x, c) => {
    const row = scores.insertRow();
    row.dataset.digit = c;
    if (c === r.target) row.classList.add("target");
    if (c === r.prediction) row.classList.add("predicted");
    row.insertCell().textContent = c;
    cell(row, fixed(x, 3), x, maxLogit, true).className = "logit";
    cell(row, small(r.softmax[c]), r.softmax[c], 1, false).className = "softmax";
    cell(row, fixed(r.log_softmax[c], 4), r.log_softmax[c], maxLog, false).className = "log-softmax";
  });

  targetSelect.querySelector("option[value='']").textContent = `the prediction (${r.prediction})`;
  const y = r.target;
  const steps = [
    [`logits x (÷ T = ${r.temperature.toFixed(3)})`, `x_${y} = ${fixed(r.scaled_logits[y], 4)}`],
    ["softmax p = exp(x) / Σ exp(x)", `p_${y} = ${small(r.softmax[y])}`],
    ["log-softmax log p", `log p_${y} = ${fixed(r.log_softmax[y], 4)}`],
    [`pick the target y = ${y}`, fixed(r.picked, 4)],
    ["negate: loss = −log p_y", loss6(r.losses["nn.CrossEntropyLoss"])],
  ];
  fillSteps(document.querySelector("#steps tbody"), steps);

  const losses = document.querySelector("#losses tbody");
  losses.replaceChildren();
  for (const [name, value] of Object.entries(r.losses)) {
    const row = losses.insertRow();
    row.insertCell().textContent = name;
    const td = row.insertCell();
    td.className = "loss-value";
    td.dataset.implementation = name;
    td.textContent = loss6(value);
  }

  const gradient = document.querySelector("#gradient tbody");
  gradient.replaceChildren();
  const maxGradient = Math.max(...r.gradient.map(Math.abs));
  r.gradient.forEach((g, c) => {
    const row = gradient.insertRow();
    if (c === r.target) row.classList.add("target");
    row.insertCell().textContent = c;
    cell(row, (g > 0 ? "+" : "") + small(g), g, maxGradient, true).className = "grad";
    row.insertCell().textContent = g < 0 ? "pushed up" : g > 0 ? "pushed down" : "";
  });

  const m = r.softmax_first;
  fillSteps(document.querySelector("#mistake-steps tbody"), [
    [`inputs to the loss: p (in [0, 1])`, `p_${y} = ${small(m.inputs[y])}`],
    ["softmax again", `${small(m.softmax[y])}`],
    ["log", fixed(m.log_softmax[y], 4)],
    ["loss (SoftmaxFirstCrossEntropyLoss)", loss6(m.loss)],
    ["its floor: log(1 + 9/e), even at p_y = 1", loss6(m.floor)],
    ["Keras's CategoricalCrossentropy() handed the logits (from_logits=False): x / Σx, clipped, −log", loss6(m.keras_default)],
  ]);
  renderSigmoid(r.sigmoid, y);
}

function renderSigmoid(s, y) {  // a loss=sigmoid checkpoint: independent probabilities, "none of the ten" possible
  document.getElementById("sigmoid-panel").hidden = !s;
  if (!s) return;
  document.getElementById("sigmoid-summary").textContent =
    `Each sigmoid answers "is this a c?" on its own, so the ten need not sum to 1 (here ${fixed(s.sum, 3)}). ` +
    `Answer: ${s.answer === null ? "none of the ten" : s.answer} (threshold ${s.threshold}). ` +
    `Loss for target ${y}: the mean of the ten terms, ${loss6(s.loss)}.`;
  const tbody = document.querySelector("#sigmoid tbody");
  tbody.replaceChildren();
  s.probabilities.forEach((p, c) => {
    const row = tbody.insertRow();
    row.insertCell().textContent = c;
    cell(row, small(p), p, 1, false);
    row.insertCell().textContent = fixed(s.bce[c], 4);
  });
}

function fillSteps(tbody, steps) {
  tbody.replaceChildren();
  for (const [what, value] of steps) {
    const row = tbody.insertRow();
    row.insertCell().textContent = what;
    row.insertCell().textContent = value;
  }
}

function drawPicture(picture) {
  const size = picture.length;
  const pixels = new ImageData(size, size);
  picture.flat().forEach((v, i) => {
    const grey = Math.round(255 * v);
    pixels.data.set([grey, grey, grey, 255], 4 * i);
  });
  const context = seen.getContext("2d");
  const bitmap = document.createElement("canvas");
  bitmap.width = bitmap.height = size;
  bitmap.getContext("2d").putImageData(pixels, 0, 0);
  context.imageSmoothingEnabled = false;
  context.drawImage(bitmap, 0, 0, seen.width, seen.height);
}

// --- start ---
clearPad();
document.body.classList.add("empty");
fetch("/api/info").then((r) => r.json()).then((info) => {
  document.getElementById("checkpoint").textContent = info.checkpoint;
}).catch(() => showMessage("The demo server cannot be reached.", true));
