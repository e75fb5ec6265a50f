"""CRM webhook bodies (amoCRM/Kommo, Bitrix24): the form parser, the events they carry, the mapping to
offline conversions. Pure: no I/O, shared by the gateway (accepting, natural keys) and the consumers."""
