// Empty: its presence lets compute.go declare runtime.nanotime without a body (go:linkname).
