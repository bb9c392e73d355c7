package benchbin

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/store"
)

// The bare handlers run in a process of their own: this test binary, run
// again with these variables (startBare).
const (
	envBareMode = "BENCHBIN_BARE"      // get or insert
	envBareAddr = "BENCHBIN_BARE_ADDR" // where to listen
	envBareBody = "BENCHBIN_BARE_BODY" // get: the file whose bytes it answers
	envBareDB   = "BENCHBIN_BARE_DB"   // insert: the database URL
)

// barePrefix names the bare_notifications table the insert handler writes.
const bareTable = `CREATE TABLE bare_notifications (id BIGSERIAL PRIMARY KEY, collection_id BIGINT NOT NULL,
idempotency_key TEXT NOT NULL, body JSONB NOT NULL, created_time BIGINT NOT NULL)`

func TestMain(m *testing.M) {
	if mode := os.Getenv(envBareMode); mode != "" {
		if err := runBare(mode); err != nil {
			fmt.Fprintln(os.Stderr, "bare:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBare serves one bare handler until SIGTERM.
func runBare(mode string) error {
	gin.SetMode(gin.ReleaseMode) // this process only: no debug route dump
	r := gin.New()
	r.GET("/readyz", func(c *gin.Context) { c.Status(http.StatusOK) })
	switch mode {
	case "get":
		body, err := os.ReadFile(os.Getenv(envBareBody))
		if err != nil {
			return err
		}
		bareGet(r, body)
	case "insert":
		db, err := store.Open(context.Background(), config.Database{URL: os.Getenv(envBareDB),
			MaxOpenConns: config.Default().Database.MaxOpenConns}) // the service's pool size
		if err != nil {
			return err
		}
		defer store.Close(db)
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		bareInsert(r, sqlDB)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: os.Getenv(envBareAddr), Handler: r, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bareGet is a bare Gin handler on the action's path that writes the
// service's own answer from memory: no middleware, no auth, no cache.
func bareGet(r *gin.Engine, body []byte) {
	r.GET("/v1/collections/:collectionId/actions/:actionId", func(c *gin.Context) {
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
	})
}

// bareInsert is a bare Gin handler on the send's path: bind the same JSON,
// one INSERT ... RETURNING id (autocommit), 202 with the id. No middleware,
// no auth, no idempotency, no planning.
func bareInsert(r *gin.Engine, db *sql.DB) {
	type entry struct {
		Name       string            `json:"name" binding:"required"`
		Recipients []json.RawMessage `json:"recipients" binding:"required"`
	}
	r.POST("/v1/collections/:collectionId/notifications", func(c *gin.Context) {
		var in struct {
			Notification []entry `json:"notification" binding:"required"`
		}
		if err := c.ShouldBindJSON(&in); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		cid, err := strconv.ParseInt(c.Param("collectionId"), 10, 64)
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		body, err := json.Marshal(in)
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		var id int64
		if err := db.QueryRowContext(c.Request.Context(),
			`INSERT INTO bare_notifications (collection_id, idempotency_key, body, created_time) VALUES ($1, $2, $3, $4) RETURNING id`,
			cid, c.GetHeader("Idempotency-Key"), body, time.Now().UnixMilli()).Scan(&id); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"id": id})
	})
}
