// Kubernetes schema check of deploy/k8s (called by check_manifests.py, which parses the YAML).
// stdin: JSON [{"where": "file.yaml#0", "doc": {...}}, ...]. For each document:
//  1. the JSON schema of its apiVersion/kind from the npm package kubernetes-models (generated
//     from the Kubernetes OpenAPI spec; @kubernetes-models/prometheus-operator for
//     ServiceMonitor): types, enums, required fields;
//  2. strict mode, as `kubectl apply --validate=strict` or kubeconform -strict: every field must
//     exist in the type (the generated schemas accept unknown fields, which the API server
//     drops silently: a typo such as `readinesProbe` would vanish). The field names come from
//     the package's generated TypeScript declarations.
// Exits 1 when any document fails, 4 when the packages are not installed (npm ci here).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nm = path.join(here, "node_modules");
if (!fs.existsSync(path.join(nm, "kubernetes-models"))) {
  console.log("k8s_schema: kubernetes-models not installed (cd tests/scaleout && npm ci)");
  process.exit(4);
}

function modelFile(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return path.join(nm, "@kubernetes-models/prometheus-operator", group, version, kind);
  return path.join(nm, "kubernetes-models", group, version, kind);
}

// --- a small parser of the generated .d.ts interfaces -------------------------------------
const interfaces = new Map(); // .d.ts path -> {props} | null (an alias: a leaf such as Quantity)

function tokenize(text) {
  text = text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  return text.match(/"(?:[^"\\]|\\.)*"|[A-Za-z_$][\w$]*|\d+|[{}<>\[\]();:?|,.=]/g) || [];
}

function parseType(t, i, file) { // returns [type, next index]
  const members = [];
  for (;;) {
    let ty;
    if (t[i] === "Array" && t[i + 1] === "<") {
      const [of, j] = parseType(t, i + 2, file);
      ty = { kind: "array", of };
      i = j + 1; // '>'
    } else if (t[i] === "{") {
      const [obj, j] = parseMembers(t, i + 1, file);
      ty = obj;
      i = j + 1; // '}'
    } else {
      const name = t[i++];
      if (t[i] === "[") i += 3; // IFoo["apiVersion"]: a literal
      else if (/^I[A-Z]/.test(name) && !["string", "number", "boolean", "any"].includes(name))
        ty = { kind: "ref", name, file };
    }
    members.push(ty || { kind: "leaf" });
    if (t[i] !== "|") break;
    i++;
  }
  return [members.find((m) => m.kind !== "leaf") || { kind: "leaf" }, i];
}

function parseMembers(t, i, file) { // after '{' up to the matching '}'
  const props = new Map();
  let map = null;
  while (t[i] !== "}") {
    if (t[i] === "[") { // [key: string]: T;
      const [of, j] = parseType(t, i + 6, file); // [ key : string ] : T
      map = of;
      i = j + 1;
    } else {
      const name = JSON.parse(t[i++]);
      if (t[i] === "?") i++;
      const [ty, j] = parseType(t, i + 1, file);
      props.set(name, ty);
      i = j + 1; // ';'
    }
  }
  return [map ? { kind: "map", of: map } : { kind: "object", props }, i];
}

function loadInterface(dts) {
  if (interfaces.has(dts)) return interfaces.get(dts);
  const text = fs.readFileSync(dts, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/import \{ ([^}]+) \} from "([^"]+)";/g)) {
    const spec = m[2].startsWith(".") ? path.join(path.dirname(dts), m[2]) : path.join(nm, m[2]);
    for (const name of m[1].split(",").map((s) => s.trim()))
      imports.set(name, spec.replace(/\.js$/, "") + ".d.ts");
  }
  const start = text.search(/export interface \w+( extends [\w, ]+)? \{/);
  let result = null;
  if (start >= 0) {
    const t = tokenize(text.slice(text.indexOf("{", start)));
    const [obj] = parseMembers(t, 1, dts);
    if (/extends TypeMeta/.test(text.slice(start, text.indexOf("{", start))))
      for (const k of ["apiVersion", "kind"])
        if (!obj.props.has(k)) obj.props.set(k, { kind: "leaf" });
    result = { type: obj, imports };
  }
  interfaces.set(dts, result);
  return result;
}

function resolve(ty) {
  if (ty.kind !== "ref") return ty;
  const owner = loadInterface(ty.file);
  const target = owner && owner.imports.get(ty.name);
  if (!target || !fs.existsSync(target)) return { kind: "leaf" };
  const iface = loadInterface(target);
  return iface ? iface.type : { kind: "leaf" };
}

function strict(value, ty, where, errors) {
  ty = resolve(ty);
  if (value === null || typeof value !== "object") return;
  if (ty.kind === "array" && Array.isArray(value))
    value.forEach((v, k) => strict(v, ty.of, `${where}[${k}]`, errors));
  else if (ty.kind === "map")
    for (const [k, v] of Object.entries(value)) strict(v, ty.of, `${where}.${k}`, errors);
  else if (ty.kind === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (!ty.props.has(k)) errors.push(`${where}.${k}: unknown field`);
      else strict(v, ty.props.get(k), `${where}.${k}`, errors);
    }
  }
}

// --- main ------------------------------------------------------------------------------
const input = JSON.parse(fs.readFileSync(0, "utf8"));
let failed = 0, checked = 0;
for (const { where, doc } of input) {
  const file = modelFile(doc.apiVersion, doc.kind);
  if (!fs.existsSync(file + ".js")) {
    console.log(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  const errors = [];
  // kubernetes-models 4.x ships ES modules as .mjs (and CommonJS as .js), 5.x .js only
  const esm = fs.existsSync(file + ".mjs") ? file + ".mjs" : file + ".js";
  const mod = await import(pathToFileURL(esm).href);
  try {
    new mod[doc.kind](doc).validate();
  } catch (e) {
    errors.push(e.message);
  }
  const iface = loadInterface(file + ".d.ts");
  strict(doc, iface ? iface.type : { kind: "leaf" }, doc.kind, errors);
  checked++;
  if (errors.length) {
    failed++;
    for (const e of errors) console.log(`${where}: ${e}`);
  }
}
const version =
    JSON.parse(fs.readFileSync(path.join(nm, "kubernetes-models/package.json"))).version;
console.log(`k8s_schema: ${checked} documents against kubernetes-models ${version} (strict): ` +
            `${failed ? failed + " failed" : "all valid"}`);
process.exit(failed ? 1 : 0);
