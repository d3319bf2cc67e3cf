// The official JavaScript SDKs against a running clinvk gateway.
//
//   CLINVK_BASE_URL=http://127.0.0.1:8080 node smoke.mjs
//
// Runs one plain and one streaming call with each SDK (openai, @anthropic-ai/sdk), plus
// one failing agent run each, and prints one JSON object with what the SDKs returned.
// The caller (tests/js/test_js_sdks.py) asserts on it; this script only reports.

import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.CLINVK_BASE_URL;
const mark = process.env.CLINVK_MARK || 'js';
if (!base) {
  console.error('CLINVK_BASE_URL is not set');
  process.exit(2);
}

function errorReport(err) {
  return {
    class: err?.constructor?.name ?? typeof err,
    status: err?.status ?? null,
    message: String(err?.message ?? err),
    body: err?.error ?? null,
    shouldRetry: err?.headers?.get?.('x-should-retry') ?? err?.headers?.['x-should-retry'] ?? null,
  };
}

const report = {};

// ---------------------------------------------------------------- OpenAI
const openai = new OpenAI({ baseURL: `${base}/openai/v1`, apiKey: 'unused', timeout: 30000 });

const completion = await openai.chat.completions.create({
  model: 'claude',
  messages: [{ role: 'user', content: `plain ${mark}` }],
});
report.openaiPlain = {
  id: completion.id,
  text: completion.choices[0].message.content,
  finish: completion.choices[0].finish_reason,
  usage: completion.usage,
};

const stream = await openai.chat.completions.create({
  model: 'gemini',
  messages: [{ role: 'user', content: `stream ${mark}` }],
  stream: true,
  stream_options: { include_usage: true },
});
const chunks = [];
for await (const chunk of stream) chunks.push(chunk);
report.openaiStream = {
  ids: [...new Set(chunks.map((c) => c.id))],
  role: chunks[0]?.choices[0]?.delta?.role ?? null,
  text: chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''),
  finish: chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean),
  usage: chunks.at(-1)?.usage ?? null,
};

try {
  await openai.chat.completions.create({
    model: 'codex',
    messages: [{ role: 'user', content: `fail ${mark} FAKE{"error": 500}` }],
  });
  report.openaiFailure = { class: 'none' };
} catch (err) {
  report.openaiFailure = errorReport(err);
}

// ---------------------------------------------------------------- Anthropic
const anthropic = new Anthropic({ baseURL: `${base}/anthropic`, apiKey: 'unused', timeout: 30000 });

const message = await anthropic.messages.create({
  model: 'codex',
  max_tokens: 256,
  messages: [{ role: 'user', content: `plain ${mark}` }],
});
report.anthropicPlain = {
  id: message.id,
  text: message.content.map((b) => b.text).join(''),
  stop: message.stop_reason,
  usage: message.usage,
};

const texts = [];
const messageStream = anthropic.messages.stream({
  model: 'claude',
  max_tokens: 256,
  messages: [{ role: 'user', content: `stream ${mark}` }],
});
messageStream.on('text', (text) => texts.push(text));
const final = await messageStream.finalMessage();
report.anthropicStream = {
  id: final.id,
  deltas: texts.length,
  text: texts.join(''),
  finalText: final.content.map((b) => b.text).join(''),
  stop: final.stop_reason,
  usage: final.usage,
};

try {
  await anthropic.messages.create({
    model: 'gemini',
    max_tokens: 16,
    messages: [{ role: 'user', content: `fail ${mark} FAKE{"error": 500}` }],
  });
  report.anthropicFailure = { class: 'none' };
} catch (err) {
  report.anthropicFailure = errorReport(err);
}

process.stdout.write(JSON.stringify(report) + '\n');
