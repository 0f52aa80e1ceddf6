// Independent check of tests/data/tokenizer_goldens.json against Transformers.js (a port of
// HF tokenizers): for every single-text case with a shared vocab, the token ids must agree.
// Usage (from a folder with `npm install --ignore-scripts @xenova/transformers@2.17.2`):
//   node tests/tools/check_tokenizer_transformersjs.mjs <repo>/tests/data/tokenizer_goldens.json <shared>/models
import fs from 'node:fs';
import path from 'node:path';
import { PreTrainedTokenizer } from '@xenova/transformers/src/tokenizers.js';

const [goldensPath, modelsDir] = process.argv.slice(2);
const goldens = JSON.parse(fs.readFileSync(goldensPath, 'utf8'));
const bgeJson = JSON.parse(fs.readFileSync(path.join(modelsDir, 'bge-small-zh-v1.5/tokenizer.json'), 'utf8'));
const bgeConfig = JSON.parse(fs.readFileSync(path.join(modelsDir, 'bge-small-zh-v1.5/tokenizer_config.json'), 'utf8'));

// A tokenizer.json for one of the goldens' vocab settings: bge's, with its vocab and normaliser swapped.
function makeTokenizer(settings) {
  const lines = fs.readFileSync(path.join(modelsDir, settings.file), 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const vocab = {};
  lines.forEach((token, id) => { vocab[token] = id; });
  const json = structuredClone(bgeJson);
  json.model.vocab = vocab;
  json.normalizer.lowercase = settings.do_lower_case;
  json.normalizer.strip_accents = settings.strip_accents;
  json.added_tokens = json.added_tokens.map((t) => ({ ...t, id: vocab[t.content] }));
  for (const key of Object.keys(json.post_processor.special_tokens))
    json.post_processor.special_tokens[key].ids = [vocab[key]];
  return new PreTrainedTokenizer(json, { ...bgeConfig, do_lower_case: settings.do_lower_case });
}

let checked = 0, mismatched = 0;
for (const [name, settings] of Object.entries(goldens.vocabs)) {
  if (!settings.file) continue;
  const tokenizer = makeTokenizer(settings);
  for (const c of goldens.cases) {
    if (c.vocab !== name || (c.kind !== 'tokenize' && c.kind !== 'encode') || c.max_length !== undefined || c.error) continue;
    const ids = tokenizer.encode(c.text, null, { add_special_tokens: c.kind === 'encode' });
    checked++;
    if (JSON.stringify(ids) !== JSON.stringify(c.ids)) {
      mismatched++;
      console.log(JSON.stringify({ vocab: name, text: c.text, golden: c.ids, transformers_js: ids }));
    }
  }
}
console.log(`${checked - mismatched} passed, ${mismatched} failed`);
process.exit(mismatched ? 1 : 0);
