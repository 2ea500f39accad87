// A worker written with the official Node SDK (npm `iii-sdk`), driven by anyiii's interop tests.
//
//     node node_worker.mjs ENGINE_URL [--prefix node] [--http-path node/hello] [--name NAME]
//
// Same line protocol as py_worker.py: it registers `<prefix>::echo`, `<prefix>::fail`
// (throws Error("boom")), `<prefix>::slow` (never answers within the test),
// `<prefix>::http` (answers 201 with a JSON body, bound to an `http` trigger on
// `--http-path`), `<prefix>::gate` (an http middleware, as in py_worker.py), `<prefix>::stream`,
// `<prefix>::sse` (server-sent events; the third once `{"op": "release", "tag"}` came),
// `<prefix>::drain` and `<prefix>::fill` (channels, as in py_worker.py), waits until the
// engine lists all of it, then prints `{"event": "ready", ...}`. stdin takes `{"op": "call" | "void", "tag", "function_id",
// "payload"}` lines and answers with `result` / `error` / `sent` events, and `{"op": "bind",
// "tag", "trigger_type", "function_id", "config", "metadata"?}` lines (one `registerTrigger`,
// answered with a `bound` event once sent); handlers print `invoked` events.
// `{"op": "enqueue", ..., "queue"}` calls with TriggerAction.Enqueue. `{"op": "register_http",
// "tag", "function_id", "invocation"}` registers an HTTP-invoked function (`registerFunction`
// with an invocation object instead of a handler) and answers `result` with its id once the
// engine lists it. `{"op": "send_channel" | "receive_channel", ...}` make a channel with the
// SDK's `createChannel` and hand one end's ref to a function, as in py_worker.py. End of
// stdin shuts the worker down.
//
// The SDK itself prints `[iii] ...` debug lines on stdout; the tests skip lines that are not
// JSON events.
//
// `iii-sdk` is installed in ../node (its package.json and lock file pin the version); set
// ANYIII_INTEROP_NODE_DIR to use another install. It is loaded through `require`, so this runs
// the SDK's CommonJS build, compiled from the same sources as its ES module build.

import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = path.dirname(fileURLToPath(import.meta.url))
const nodeDir = process.env.ANYIII_INTEROP_NODE_DIR ?? path.join(here, '..', 'node')
const require = createRequire(path.join(nodeDir, 'package.json'))
const { registerWorker, TriggerAction, InvocationError } = require('iii-sdk')
const { createChannel } = require('iii-sdk/helpers')

// Resolved by the `release` command: what `<prefix>::sse` waits for before its third event.
let release
const released = new Promise((resolve) => {
  release = resolve
})

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`)
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string', default: 'node' },
    'http-path': { type: 'string' },
    name: { type: 'string' },
    token: { type: 'string' },
  },
})
if (positionals.length !== 1) {
  console.error('usage: node node_worker.mjs ENGINE_URL [--prefix P] [--http-path PATH] [--name N] [--token T]')
  process.exit(2)
}
const url = positionals[0]
const prefix = values.prefix
const httpPath = values['http-path'] ?? `${prefix}/hello`

// What a channel carried, in order: runs of data (counted and hashed) and messages, as
// py_worker.py's Tally reports it.
class Tally {
  constructor() {
    this.items = []
    this.size = 0
    this.digest = createHash('sha256')
  }
  data(chunk) {
    this.size += chunk.length
    this.digest.update(chunk)
    const last = this.items[this.items.length - 1]
    if (last && last[0] === 'data') last[1] += chunk.length
    else this.items.push(['data', chunk.length])
  }
  message(text) {
    this.items.push(['message', text])
  }
  report() {
    const messages = this.items.filter(([kind]) => kind === 'message').map(([, text]) => text)
    return { size: this.size, sha256: this.digest.digest('hex'), messages, items: this.items }
  }
}

// Everything on the SDK's ChannelReader: data from its Readable `stream` (flowing), messages
// through `onMessage`, both in the order the socket delivers them.
function readChannel(reader) {
  const tally = new Tally()
  reader.onMessage((text) => tally.message(text))
  return new Promise((resolve, reject) => {
    reader.stream.on('data', (chunk) => tally.data(chunk))
    reader.stream.on('end', () => resolve(tally.report()))
    reader.stream.on('error', reject)
  })
}

// A channel script (see py_worker.py) on the SDK's ChannelWriter: each data step is one
// `stream.write` (awaited), each message one `sendMessage`, a `hang` step prints `stalled`
// and never returns; then `stream.end()`.
async function writeChannel(writer, script) {
  for (const step of script) {
    if ('message' in step) {
      writer.sendMessage(step.message)
      continue
    }
    if (step.hang) {
      emit('stalled')
      await new Promise(() => {}) // forever: the test kills the worker
    }
    const pattern = Buffer.from(step.data, 'hex')
    const data = Buffer.alloc(pattern.length * (step.times ?? 1), pattern)
    await new Promise((resolve, reject) => writer.stream.write(data, (error) => (error ? reject(error) : resolve())))
  }
  await new Promise((resolve, reject) => writer.stream.end((error) => (error ? reject(error) : resolve())))
}

// SDK 0.22.1 does not read III_TOKEN: `--token` goes on the handshake as a header.
const headers = values.token ? { Authorization: `Bearer ${values.token}` } : undefined
const iii = registerWorker(url, { workerName: values.name ?? `${prefix}-official`, headers })

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
  // Server-sent events on `response`: the third event only once `release` came.
  sse: async (request) => {
    emit('invoked', { function_id: `${prefix}::sse`, payload: {} })
    request.response.sendMessage(JSON.stringify({ type: 'set_status', status_code: 200 }))
    request.response.sendMessage(
      JSON.stringify({ type: 'set_headers', headers: { 'content-type': 'text/event-stream', 'x-worker': 'node' } }),
    )
    await new Promise((resolve) => request.response.stream.write(Buffer.from('event: tick\ndata: 1\n\n'), resolve))
    await new Promise((resolve) => request.response.stream.write(Buffer.from('event: tick\ndata: 2\n\n'), resolve))
    await released
    await new Promise((resolve) => request.response.stream.end(Buffer.from('event: tick\ndata: 3\n\n'), resolve))
    return null
  },
  drain: async (data) => {
    const body = data.body
    emit('invoked', { function_id: `${prefix}::drain`, payload: { body: body?.constructor?.name ?? null } })
    return { end: body.constructor.name, ...(await readChannel(body)) }
  },
  fill: async (data) => {
    const out = data.out
    emit('invoked', { function_id: `${prefix}::fill`, payload: { out: out?.constructor?.name ?? null } })
    await writeChannel(out, data.script)
    return { end: out.constructor.name }
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

// The engine lists a function once it applied the registration.
async function waitUntilFunctionListed(functionId) {
  const deadline = Date.now() + 20_000
  for (;;) {
    const functions = await iii.trigger({ function_id: 'engine::functions::list', payload: {} })
    if ((functions?.functions ?? []).some((f) => f.function_id === functionId)) return functionId
    if (Date.now() > deadline) throw new Error(`the engine never listed ${functionId}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function registerHttp(command) {
  iii.registerFunction(command.function_id, command.invocation)
  return await waitUntilFunctionListed(command.function_id)
}

// A channel made with this SDK: one end kept here, the other's ref (`readerRef` /
// `writerRef`, plain objects) in the payload of a call to `function_id`, both at once.
async function channelCommand(command) {
  const channel = await createChannel(iii, command.buffer_size ?? undefined)
  if (command.op === 'send_channel') {
    const call = iii.trigger({ function_id: command.function_id, payload: { body: channel.readerRef } })
    const [value] = await Promise.all([call, writeChannel(channel.writer, command.script)])
    return value
  }
  const call = iii.trigger({ function_id: command.function_id, payload: { out: channel.writerRef } })
  const [value, received] = await Promise.all([call, readChannel(channel.reader)])
  return { value, received }
}

const COMMANDS = { register_http: registerHttp, send_channel: channelCommand, receive_channel: channelCommand }

async function runCommand(command) {
  const { tag, op, function_id, payload } = command
  if (op === 'bind') return bind(command)
  if (op === 'release') {
    release()
    emit('released', { tag })
    return
  }
  if (op in COMMANDS) {
    try {
      emit('result', { tag, value: (await COMMANDS[op](command)) ?? null })
    } catch (error) {
      const code = error instanceof InvocationError ? error.code : (error?.name ?? 'Error')
      emit('error', { tag, code, message: String(error?.message ?? error) })
    }
    return
  }
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
