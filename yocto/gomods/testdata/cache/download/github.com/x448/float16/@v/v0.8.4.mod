module github.com/x448/float16

go 1.11
