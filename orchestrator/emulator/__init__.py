"""An MGN emulator: an aiohttp server speaking MGN's REST-JSON, with fault injection."""
