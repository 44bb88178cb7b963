"""An MGN emulator: an aiohttp server speaking MGN's REST-JSON, with fault injection.

Entry points: `testing.running_emulator()` (tests), `cli` (`mgn-cutover simulate`),
`engine.Emulator` with `server.start_server()` (embedding). See README.md in this folder.
"""
