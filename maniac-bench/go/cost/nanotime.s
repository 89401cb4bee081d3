// Empty: its presence lets cost.go declare runtime.nanotime without a body (go:linkname).
