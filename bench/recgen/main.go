// Command recgen writes recordings as callgate's recorder leaves them
// (stereo G.711 WAV, a tone per side) into a recordings directory, as a
// backlog for the encoders to work through during a benchmark.
//
//	go run ./bench/recgen -dir /tmp/rec -n 20 -minutes 10
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"

	"callgate/media/g711"
	"callgate/media/record"
)

func main() {
	dir := flag.String("dir", "", "recordings directory (recording.dir)")
	n := flag.Int("n", 10, "recordings to write")
	minutes := flag.Int("minutes", 10, "length of each")
	flag.Parse()
	if *dir == "" {
		log.Fatal("recgen: -dir is required")
	}
	day := filepath.Join(*dir, "2026", "11", "30")
	if err := os.MkdirAll(day, 0o750); err != nil {
		log.Fatal(err)
	}
	frames := 8000 * 60 * *minutes
	pcm := make([]int16, 2*frames)
	for i := range frames {
		x := float64(i) / 8000
		pcm[2*i], pcm[2*i+1] = int16(9000*math.Sin(2*math.Pi*440*x)), int16(9000*math.Sin(2*math.Pi*1000*x))
	}
	for i := range *n {
		if err := record.WriteWAV(filepath.Join(day, fmt.Sprintf("backlog-%d-1.wav", i)), g711.PCMA, pcm); err != nil {
			log.Fatal(err)
		}
	}
}
