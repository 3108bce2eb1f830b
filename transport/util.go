package transport

import "strconv"

func itoa(u uint64) string  { return strconv.FormatUint(u, 10) }
func quote(s string) string { return strconv.Quote(s) }
