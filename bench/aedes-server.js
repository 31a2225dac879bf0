// Aedes as people deploy it: default options, in-memory persistence, plain TCP.
// Usage: node bench/aedes-server.js PORT [--nodelay]
import net from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2])
const broker = await Aedes.createBroker()
// Clients vanishing at the end of a run are expected, not worth a stack trace.
broker.on('clientError', () => {})
broker.on('connectionError', () => {})
const server = net.createServer({ noDelay: process.argv.includes('--nodelay') }, broker.handle)
server.listen(port, '127.0.0.1')
