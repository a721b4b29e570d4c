#!/usr/bin/env bash
# Vendor the browser libraries the pages use, from the npm registry (pinned versions), into
# static/vendor/. Nothing is fetched at run time: the pages load only these copies.
#
# - chart.js (job page charts): small, committed.
# - onnxruntime-web and @mediapipe/face_detection (on-device webcam inference): about 21 MB of
#   WebAssembly, not committed (.gitignore); `make setup` runs this script when they are missing
#   or this script changed. Needs npm (scripts/system-deps.sh installs it on Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
CHART_VERSION="${CHART_VERSION:-4.6.1}"
ORT_VERSION="${ORT_VERSION:-1.30.0}"
FACE_DETECTION_VERSION="${FACE_DETECTION_VERSION:-0.4.1646425229}"

if ! command -v npm >/dev/null; then
  echo "vendor.sh: npm is missing; install Node.js and npm (bash scripts/system-deps.sh does on Debian)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# unpack NAME@VERSION DIR: the package's files under DIR/package
unpack() {
  mkdir -p "$2"
  (cd "$2" && npm pack --silent "$1" >/dev/null && tar xzf ./*.tgz)
}

unpack "chart.js@${CHART_VERSION}" "$work/chart"
mkdir -p static/vendor
cp "$work/chart/package/dist/chart.umd.min.js" static/vendor/chart.umd.min.js
cp "$work/chart/package/LICENSE.md" static/vendor/chart.js.LICENSE.md
echo "chart.js ${CHART_VERSION} -> static/vendor/chart.umd.min.js"

# onnxruntime-web: the WebAssembly-only build (CPU) and the one .wasm it loads (SIMD; it runs
# single-threaded when the page is not cross-origin isolated).
unpack "onnxruntime-web@${ORT_VERSION}" "$work/ort"
rm -rf static/vendor/ort
mkdir -p static/vendor/ort
for f in ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
  install -m 644 "$work/ort/package/dist/$f" static/vendor/ort/
done
printf 'onnxruntime-web %s (MIT License, Copyright (c) Microsoft Corporation) from the npm registry\n' \
  "$ORT_VERSION" >static/vendor/ort/VERSION
echo "onnxruntime-web ${ORT_VERSION} -> static/vendor/ort/"

# @mediapipe/face_detection: the legacy JS solution carries its wasm, the short-range BlazeFace
# model and its graph in the package; the page points locateFile at this folder.
unpack "@mediapipe/face_detection@${FACE_DETECTION_VERSION}" "$work/fd"
rm -rf static/vendor/face_detection
mkdir -p static/vendor/face_detection
for f in face_detection.js face_detection_short.binarypb face_detection_short_range.tflite \
  face_detection_solution_simd_wasm_bin.js face_detection_solution_simd_wasm_bin.wasm \
  face_detection_solution_simd_wasm_bin.data; do
  install -m 644 "$work/fd/package/$f" static/vendor/face_detection/
done
# Its Emscripten glue builds embind's call wrappers with `new Function`, which the site's
# Content-Security-Policy forbids (no 'unsafe-eval'). Swap those three functions for closures
# that do the same without eval (what Emscripten generates with DYNAMIC_EXECUTION=0); each
# original is checked by hash, so a different file stops this script instead of half-patching.
node - static/vendor/face_detection/face_detection_solution_simd_wasm_bin.js <<'JS'
const fs = require("fs");
const crypto = require("crypto");
const file = process.argv[2];
let src = fs.readFileSync(file, "utf8");
const replacements = {
  createNamedFunction: ["a95503dfa8465a8517c1b5d99e003f0b381cc7055e723205c0c7bd250cb99a6c", `
function createNamedFunction(name, body) {
  var f = function () { "use strict"; return body.apply(this, arguments); };
  Object.defineProperty(f, "name", { value: makeLegalFunctionName(name) });
  return f;
}`],
  craftInvokerFunction: ["c3b5cdb7cca16a1c5e64153b4c4a1fe191754afcb67e3821dbeb82992761732f", `
function craftInvokerFunction(humanName, argTypes, classType, cppInvokerFunc, cppTargetFunc) {
  var argCount = argTypes.length;
  if (argCount < 2) throwBindingError("argTypes array size mismatch! Must at least get return value and 'this' types!");
  var isClassMethodFunc = argTypes[1] !== null && classType !== null;
  var needsDestructorStack = false;
  for (var i = 1; i < argTypes.length; ++i) {
    if (argTypes[i] !== null && argTypes[i].destructorFunction === undefined) { needsDestructorStack = true; break; }
  }
  var returns = argTypes[0].name !== "void";
  var expected = argCount - 2;
  return createNamedFunction(humanName, function () {
    if (arguments.length !== expected) {
      throwBindingError("function " + humanName + " called with " + arguments.length + " arguments, expected " + expected + " args!");
    }
    var destructors = needsDestructorStack ? [] : null;
    var thisWired;
    var argsWired = [];
    var call = [cppTargetFunc];
    if (isClassMethodFunc) { thisWired = argTypes[1].toWireType(destructors, this); call.push(thisWired); }
    for (var i = 0; i < expected; ++i) { argsWired.push(argTypes[i + 2].toWireType(destructors, arguments[i])); }
    var rv = cppInvokerFunc.apply(null, call.concat(argsWired));
    if (needsDestructorStack) {
      runDestructors(destructors);
    } else {
      for (var i = isClassMethodFunc ? 1 : 2; i < argTypes.length; ++i) {
        if (argTypes[i].destructorFunction !== null) argTypes[i].destructorFunction(i === 1 ? thisWired : argsWired[i - 2]);
      }
    }
    if (returns) return argTypes[0].fromWireType(rv);
  });
}`],
  __emval_get_method_caller: ["b84bba3a36b702062a44bacda7b6560d71f9e11ecb89de0163d3355dbb7db0a9", `
function __emval_get_method_caller(argCount, argTypes) {
  var types = __emval_lookupTypes(argCount, argTypes);
  var retType = types[0];
  var signatureName = retType.name + "_$" + types.slice(1).map(function (t) { return t.name; }).join("_") + "$";
  var returnId = emval_registeredMethods[signatureName];
  if (returnId !== undefined) return returnId;
  var invokerFunction = function (handle, name, destructors, args) {
    var offset = 0;
    var argv = [];
    for (var i = 0; i < argCount - 1; ++i) {
      argv.push(types[i + 1].readValueFromPointer(args + offset));
      offset += types[i + 1]["argPackAdvance"];
    }
    var rv = handle[name].apply(handle, argv);
    for (var i = 0; i < argCount - 1; ++i) {
      if (types[i + 1]["deleteObject"]) types[i + 1].deleteObject(argv[i]);
    }
    if (!retType.isVoid) return retType.toWireType(destructors, rv);
  };
  returnId = __emval_addMethodCaller(invokerFunction);
  emval_registeredMethods[signatureName] = returnId;
  return returnId;
}`],
};
for (const [name, [hash, code]] of Object.entries(replacements)) {
  const start = src.indexOf("function " + name + "(");
  if (start < 0 || src.indexOf("function " + name + "(", start + 1) >= 0) throw new Error(name + ": not found exactly once");
  let depth = 0;
  let end = start;
  for (; end < src.length; end++) {
    if (src[end] === "{") depth++;
    else if (src[end] === "}" && --depth === 0) break;
  }
  const original = src.slice(start, end + 1);
  if (crypto.createHash("sha256").update(original).digest("hex") !== hash) throw new Error(name + ": unexpected source, not patched");
  src = src.slice(0, start) + code.trim() + src.slice(end + 1);
}
if (/new Function|new_\(Function|\beval\(/.test(src)) throw new Error("eval is still used after patching");
fs.writeFileSync(file, src);
JS
printf '@mediapipe/face_detection %s (Apache License 2.0, Google) from the npm registry;\n%s\n' \
  "$FACE_DETECTION_VERSION" "face_detection_solution_simd_wasm_bin.js patched by scripts/vendor.sh: embind without eval" \
  >static/vendor/face_detection/VERSION
echo "@mediapipe/face_detection ${FACE_DETECTION_VERSION} -> static/vendor/face_detection/"
