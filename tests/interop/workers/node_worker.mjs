// A worker written with the official Node SDK (npm `iii-sdk`), driven by anyiii's interop tests.
//
//     node node_worker.mjs ENGINE_URL [--prefix node] [--http-path node/hello] [--name NAME]
//
// Same line protocol as py_worker.py: it registers `<prefix>::echo`, `<prefix>::fail`
// (throws Error("boom")), `<prefix>::slow` (never answers within the test),
// `<prefix>::http` (answers 201 with a JSON body, bound to an `http` trigger on
// `--http-path`) and `<prefix>::gate` (an http middleware, as in py_worker.py), waits until the engine lists all of it, then prints
// `{"event": "ready", ...}`. stdin takes `{"op": "call" | "void", "tag", "function_id",
// "payload"}` lines and answers with `result` / `error` / `sent` events, and `{"op": "bind",
// "tag", "trigger_type", "function_id", "config", "metadata"?}` lines (one `registerTrigger`,
// answered with a `bound` event once sent); handlers print `invoked` events.
// `{"op": "enqueue", ..., "queue"}` calls with TriggerAction.Enqueue. End of stdin shuts the
// worker down.
//
// The SDK itself prints `[iii] ...` debug lines on stdout; the tests skip lines that are not
// JSON events.
//
// `iii-sdk` is installed in ../node (its package.json and lock file pin the version); set
// ANYIII_INTEROP_NODE_DIR to use another install. It is loaded through `require`, so this runs
// the SDK's CommonJS build, compiled from the same sources as its ES module build.

import { createRequire } from 'node:module'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))
const nodeDir = process.env.ANYIII_INTEROP_NODE_DIR ?? path.join(here, '..', 'node')
const require = createRequire(path.join(nodeDir, 'package.json'))
const { registerWorker, TriggerAction, InvocationError } = require('iii-sdk')

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`)
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string', default: 'node' },
    'http-path': { type: 'string' },
    name: { type: 'string' },
  },
})
if (positionals.length !== 1) {
  console.error('usage: node node_worker.mjs ENGINE_URL [--prefix P] [--http-path PATH] [--name N]')
  process.exit(2)
}
const url = positionals[0]
const prefix = values.prefix
const httpPath = values['http-path'] ?? `${prefix}/hello`

const iii = registerWorker(url, { workerName: values.name ?? `${prefix}-official` })

const handlers = {
  echo: async (data) => {
    emit('invoked', { function_id: `${prefix}::echo`, payload: data })
    return data
  },
  fail: async (data) => {
    emit('invoked', { function_id: `${prefix}::fail`, payload: data })
    throw new Error('boom')
  },
  slow: async (data) => {
    emit('invoked', { function_id: `${prefix}::slow`, payload: data })
    await new Promise((resolve) => setTimeout(resolve, 3_600_000))
    return { slept: true }
  },
  http: async (request) => {
    emit('invoked', { function_id: `${prefix}::http`, payload: request })
    return {
      status_code: 201,
      body: {
        ok: true,
        worker: 'node',
        method: request?.method ?? null,
        name: request?.query_params?.name ?? null,
      },
    }
  },
  // A streaming http handler: the body from `request_body`, the answer on `response`.
  stream: async (request) => {
    const body = await request.request_body.readAll()
    emit('invoked', { function_id: `${prefix}::stream`, payload: { body: body.toString() } })
    request.response.sendMessage(JSON.stringify({ type: 'set_status', status_code: 201 }))
    request.response.sendMessage(
      JSON.stringify({ type: 'set_headers', headers: { 'content-type': 'text/plain', 'x-worker': 'node' } }),
    )
    await new Promise((resolve) => request.response.stream.write(Buffer.concat([Buffer.from('got '), body]), resolve))
    await new Promise((resolve) => request.response.stream.end(Buffer.from(', done'), resolve))
    return null
  },
  // An http middleware: answers 403 itself when the request has an `x-deny` header.
  gate: async (data) => {
    emit('invoked', { function_id: `${prefix}::gate`, payload: data })
    if (!('x-deny' in (data?.request?.headers ?? {}))) return { action: 'continue' }
    return {
      action: 'respond',
      response: {
        status_code: 403,
        body: { denied_by: 'node' },
        headers: { 'x-denied-by': `${prefix}::gate` },
      },
    }
  },
}
const functionIds = Object.keys(handlers).map((name) => `${prefix}::${name}`)
for (const [name, handler] of Object.entries(handlers)) {
  iii.registerFunction(`${prefix}::${name}`, handler)
}
iii.registerTrigger({
  type: 'http',
  function_id: `${prefix}::http`,
  config: { api_path: httpPath, http_method: 'GET' },
})

// registerFunction only queues the frames; ask the engine until it lists everything.
async function waitUntilListed() {
  const deadline = Date.now() + 20_000
  for (;;) {
    const functions = await iii.trigger({ function_id: 'engine::functions::list', payload: {} })
    const listed = new Set((functions?.functions ?? []).map((f) => f.function_id))
    const bindings = await iii.trigger({
      function_id: 'engine::registered-triggers::list',
      payload: {},
    })
    const bound = (bindings?.registered_triggers ?? []).some(
      (b) => b.trigger_type === 'http' && b.function_id === `${prefix}::http`,
    )
    if (functionIds.every((id) => listed.has(id)) && bound) return
    if (Date.now() > deadline) {
      console.error(`the engine never listed ${functionIds}: it has ${[...listed]}`)
      process.exit(1)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function bind(command) {
  const { tag, trigger_type, function_id, config, metadata } = command
  const trigger = { type: trigger_type, function_id, config }
  if (metadata !== undefined && metadata !== null) trigger.metadata = metadata
  iii.registerTrigger(trigger)
  emit('bound', { tag })
}

async function runCommand(command) {
  const { tag, op, function_id, payload } = command
  if (op === 'bind') return bind(command)
  const request = { function_id, payload }
  if (op === 'void') request.action = TriggerAction.Void()
  if (op === 'enqueue') request.action = TriggerAction.Enqueue({ queue: command.queue })
  try {
    const value = await iii.trigger(request)
    if (op === 'void') emit('sent', { tag })
    else emit('result', { tag, value: value ?? null })
  } catch (error) {
    const code = error instanceof InvocationError ? error.code : (error?.name ?? 'Error')
    emit('error', { tag, code, message: String(error?.message ?? error) })
  }
}

await waitUntilListed()
emit('ready', { worker_id: iii.workerId ?? null, functions: functionIds, http_path: httpPath })

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (line.trim()) runCommand(JSON.parse(line))
})
lines.on('close', async () => {
  await iii.shutdown()
  process.exit(0)
})
